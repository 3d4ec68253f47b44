#!/usr/bin/env bash
# Checks the OpenAPI document (httpapi/testdata/openapi.json, the one the
# server serves) with the tools client teams use: openapi-typescript output
# compiled by tsc --strict (the README's TypeScript example must compile,
# scripts/api-clients/refused.ts must not), Redocly lint (recommended) and
# Spectral (spectral:oas), each with 0 errors. Needs node and npm; the
# packages (pinned in scripts/api-clients/package.json) are installed into a
# temporary directory, with npm's cache in ~/.npm, never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "check-api-clients: $tool is required (apt-get install nodejs npm)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp scripts/api-clients/package.json scripts/api-clients/refused.ts scripts/api-clients/.spectral.yaml "$work/"
cp httpapi/testdata/openapi.json "$work/"
# The README's TypeScript example, as a reader would paste it.
awk '/^```ts$/{on=1; next} /^```$/{on=0} on' README.md > "$work/example.ts"
[ -s "$work/example.ts" ] || { echo "check-api-clients: no \`\`\`ts block in README.md" >&2; exit 1; }
cd "$work"
npm install --no-audit --no-fund --loglevel=error >/dev/null
npx openapi-typescript openapi.json -o api.d.ts >/dev/null
tsc() { npx tsc --strict --noEmit --module nodenext --moduleResolution nodenext --target es2022 --skipLibCheck "$@"; }
tsc example.ts
if out=$(tsc refused.ts); then
  echo "check-api-clients: tsc accepted refused.ts" >&2; exit 1
fi
for want in "refused.ts(6," "refused.ts(9," "refused.ts(12," "refused.ts(14,"; do
  grep -qF "$want" <<<"$out" || { echo "check-api-clients: tsc did not refuse line ${want#refused.ts(}"; echo "$out"; exit 1; } >&2
done
npx redocly lint --extends recommended openapi.json
npx spectral lint openapi.json --ruleset .spectral.yaml --fail-severity error
echo "check-api-clients: ok ($root)"
