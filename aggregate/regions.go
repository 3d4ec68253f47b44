package aggregate

import "slices"

// Region is a deployment region a tenant's data lives in.
type Region string

// Regions lists every region a tenant may live in, in a stable order.
var regions = []Region{
	"us-east-1", "us-west-1", "us-west-2", "ca-central-1",
	"eu-west-1", "eu-central-1", "eu-west-2",
	"ap-southeast-1", "ap-northeast-1", "ap-south-1", "ap-southeast-2",
}

// Regions returns every valid region.
func Regions() []Region { return slices.Clone(regions) }

// Valid reports whether r is a known region.
func (r Region) Valid() bool { return slices.Contains(regions, r) }

// Jurisdiction groups regions for data-residency rules: "us", "ca", "eu" or "ap".
func (r Region) Jurisdiction() string {
	if len(r) >= 2 {
		return string(r[:2])
	}
	return ""
}
