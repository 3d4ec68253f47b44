// What a generated client must refuse: each line below is an error for
// tsc --strict (check-api-clients.sh fails unless every one is reported).
import type { components, paths } from "./api";

// A status that does not exist.
export const status: components["schemas"]["Tenant"]["status"] = "ACTIV";
// limit is a number, not a string.
type ListQuery = NonNullable<paths["/api/v1/tenants"]["get"]["parameters"]["query"]>;
export const query: ListQuery = { limit: "20" };
// suspend needs a body (with a reason).
type SuspendBody = paths["/api/v1/tenants/{id}/suspend"]["post"]["requestBody"];
export const noBody: SuspendBody = undefined;
// A tenant always has its id, name, status… (required members).
export const partial: components["schemas"]["Tenant"] = { status: "ACTIVE" };
