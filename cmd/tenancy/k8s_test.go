package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tenancyhq/tenancy/httpapi"
)

// The manifests are checked by decoding them strictly into the Kubernetes
// API's own Go types (k8s.io/api, the types the API server is generated
// from): a misspelt or misplaced field is an error, as kubectl --validate
// would say. kubeconform would need its JSON schemas from GitHub, which
// this network cannot reach. Then the invariants no schema knows: the
// probes hit routes the service serves, the ports agree, the budget and
// the Service select the Deployment's pods, every variable is one the
// service reads, no Secret is committed.

const k8sDir = "../../deploy/k8s"

// kustomization is the part of kustomization.yaml the manifests use.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests are the objects of deploy/k8s, by kind.
type manifests struct {
	deployment appsv1.Deployment
	service    corev1.Service
	configMap  corev1.ConfigMap
	pdb        policyv1.PodDisruptionBudget
}

func readManifests(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(k.Resources, name) {
			t.Errorf("%s is not in kustomization.yaml's resources", name)
		}
	}
	var m manifests
	seen := map[string]bool{}
	for _, name := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(k8sDir, name))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", name, err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var into any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			into = &m.deployment
		case "v1 Service":
			into = &m.service
		case "v1 ConfigMap":
			into = &m.configMap
		case "policy/v1 PodDisruptionBudget":
			into = &m.pdb
		case "v1 Secret":
			t.Fatalf("%s is a Secret: secrets are not committed (docs/deploy.md shows how to create it)", name)
		default:
			t.Fatalf("%s: unexpected %s %s", name, meta.APIVersion, meta.Kind)
		}
		if seen[meta.Kind] {
			t.Fatalf("%s: a second %s", name, meta.Kind)
		}
		seen[meta.Kind] = true
		if err := yaml.UnmarshalStrict(raw, into); err != nil {
			t.Fatalf("%s does not decode strictly into %s %s: %v", name, meta.APIVersion, meta.Kind, err)
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
		if !seen[kind] {
			t.Fatalf("deploy/k8s has no %s", kind)
		}
	}
	return m
}

func TestKubernetesManifestsFitTheService(t *testing.T) {
	t.Parallel()
	m := readManifests(t)
	d := m.deployment
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector %v does not select its own pods %v (%v)", d.Spec.Selector, pod.Labels, err)
	}
	psel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil || psel.Empty() || !psel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the Deployment's pods %v (%v)", m.pdb.Spec.Selector, pod.Labels, err)
	}
	if len(m.service.Spec.Selector) == 0 || !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not select the Deployment's pods %v", m.service.Spec.Selector, pod.Labels)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if mu := m.pdb.Spec.MaxUnavailable; replicas < 3 || mu == nil || mu.IntValue() < 1 || int32(mu.IntValue()) >= replicas {
		t.Errorf("%d replicas with maxUnavailable %v: want 3 or more, and a budget that lets a drain proceed while a majority serves", replicas, mu)
	}

	// The probes are routes the service serves, on the container's port.
	api, err := httpapi.New(httpapi.Deps{}, httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	routes := api.Routes()
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the service alone", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	for name, want := range map[string]string{"startup": "/health/startup", "liveness": "/health/live", "readiness": "/health/ready"} {
		p := probes[name]
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if p.HTTPGet.Path != want || !slices.Contains(routes, "GET "+p.HTTPGet.Path) {
			t.Errorf("the %s probe asks %s, want %s, a route the service serves", name, p.HTTPGet.Path, want)
		}
		if _, ok := ports[p.HTTPGet.Port.String()]; !ok {
			t.Errorf("the %s probe's port %s is not a container port %v", name, p.HTTPGet.Port.String(), ports)
		}
	}
	_, port, err := net.SplitHostPort(m.configMap.Data["HTTP_ADDR"])
	if err != nil || port != "8000" || ports["http"] != 8000 {
		t.Errorf("HTTP_ADDR %q and container port http %d must agree (8000)", m.configMap.Data["HTTP_ADDR"], ports["http"])
	}
	for _, sp := range m.service.Spec.Ports {
		if _, ok := ports[sp.TargetPort.String()]; !ok {
			t.Errorf("the Service's port %s targets %s, not a container port %v", sp.Name, sp.TargetPort.String(), ports)
		}
	}

	// Resources: requests for the scheduler, a memory limit.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() || lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit at least the request", c.Resources)
	}

	// Shutdown: the preStop sleep and serve's 25 s drain fit the grace period.
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	sleep := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		sleep = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if sleep+25 >= grace {
		t.Errorf("preStop sleep %d s + serve's 25 s shutdown do not fit terminationGracePeriodSeconds %d", sleep, grace)
	}

	// Every variable is one the service reads; secrets come from the
	// Secret "tenancy", the rest from the ConfigMap.
	read := serviceEnv(t)
	for name, value := range m.configMap.Data {
		if _, ok := read[name]; !ok {
			t.Errorf("the ConfigMap sets %s, which the service does not read", name)
		}
		if strings.Contains(name, "SECRET") || strings.Contains(name, "KEY") || strings.Contains(value, "@") {
			t.Errorf("the ConfigMap holds %s=%q, which belongs in the Secret", name, value)
		}
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil || from.ConfigMapRef.Name != m.configMap.Name {
			t.Errorf("envFrom %+v: want the ConfigMap %s", from, m.configMap.Name)
		}
	}
	for _, e := range c.Env {
		if _, ok := read[e.Name]; !ok {
			t.Errorf("the Deployment sets %s, which the service does not read", e.Name)
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "tenancy" {
			t.Errorf("%s: want it from the Secret tenancy", e.Name)
		}
	}
	for _, need := range []string{"DATABASE_URL", "TENANCY_MASTER_KEY"} {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == need && e.ValueFrom.SecretKeyRef.Optional == nil
		}) {
			t.Errorf("%s is not required from the Secret", need)
		}
	}
	if strings.Count(m.configMap.Data["NATS_URL"], "nats://") != 3 || m.configMap.Data["NATS_STREAM_REPLICAS"] != "3" {
		t.Errorf("NATS_URL %q, NATS_STREAM_REPLICAS %q: want the 3 servers of the cluster and the stream on all 3",
			m.configMap.Data["NATS_URL"], m.configMap.Data["NATS_STREAM_REPLICAS"])
	}
}
