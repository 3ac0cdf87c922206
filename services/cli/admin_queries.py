"""The GraphQL documents of ``berth admin``, in one place."""

DOMAIN_FIELDS = "name description totalResourceSlots createdAt"
PROJECT_FIELDS = "name domain description totalResourceSlots createdAt"
USER_FIELDS = "name domain role projects isActive createdAt"
KEYPAIR_FIELDS = "accessKey user domain role resourcePolicy isActive createdAt"
POLICY_FIELDS = """name totalResourceSlots maxConcurrentSessions maxPendingSessionCount
  maxPendingSessionResourceSlots maxContainersPerSession idleTimeout maxSessionLifetime
  rateLimit maxConcurrentSubscriptions maxVfolderCount maxQuotaScopeSize allowedVfolderHosts"""
RGROUP_FIELDS = "name description scheduler agentSelection allowedSessionTypes pendingTimeout public domains projects keypairs"

DOMAINS = "query($p: Int) { domains(afterPosition: $p) { " + DOMAIN_FIELDS + " } }"
PROJECTS = "query($p: Int, $d: String) { projects(afterPosition: $p, domain: $d) { " + PROJECT_FIELDS + " } }"
USERS = "query($p: Int, $d: String) { users(afterPosition: $p, domain: $d) { " + USER_FIELDS + " } }"
KEYPAIRS = "query($p: Int, $u: String) { keypairs(afterPosition: $p, user: $u) { " + KEYPAIR_FIELDS + " } }"
POLICIES = "query($p: Int) { resourcePolicies(afterPosition: $p) { " + POLICY_FIELDS + " } }"
RGROUPS = "query($p: Int) { resourceGroups(afterPosition: $p) { " + RGROUP_FIELDS + " } }"

RESULT = "{ id position }"
CREATE_DOMAIN = "mutation($i: DomainInput!) { createDomain(input: $i) " + RESULT + " }"
UPDATE_DOMAIN = "mutation($i: DomainInput!) { updateDomain(input: $i) " + RESULT + " }"
CREATE_PROJECT = "mutation($i: ProjectInput!) { createProject(input: $i) " + RESULT + " }"
UPDATE_PROJECT = "mutation($i: ProjectInput!) { updateProject(input: $i) " + RESULT + " }"
CREATE_USER = "mutation($i: UserInput!) { createUser(input: $i) " + RESULT + " }"
DEACTIVATE_USER = "mutation($n: String!) { deactivateUser(name: $n) " + RESULT + " }"
CREATE_KEYPAIR = ("mutation($u: String!, $p: String!) { createKeypair(user: $u, resourcePolicy: $p)"
                  " { accessKey secretKey position } }")
DEACTIVATE_KEYPAIR = "mutation($k: String!) { deactivateKeypair(accessKey: $k) " + RESULT + " }"
SET_KEYPAIR_POLICY = ("mutation($k: String!, $p: String!) { setKeypairPolicy(accessKey: $k, resourcePolicy: $p) "
                      + RESULT + " }")
CREATE_POLICY = "mutation($i: ResourcePolicyInput!) { createResourcePolicy(input: $i) " + RESULT + " }"
UPDATE_POLICY = "mutation($i: ResourcePolicyInput!) { updateResourcePolicy(input: $i) " + RESULT + " }"
CREATE_RGROUP = "mutation($i: ResourceGroupInput!) { createResourceGroup(input: $i) " + RESULT + " }"
UPDATE_RGROUP = "mutation($i: ResourceGroupInput!) { updateResourceGroup(input: $i) " + RESULT + " }"
SET_PROJECT_STORAGE_LIMIT = ("mutation($n: String!, $b: Float!) { setProjectStorageLimit(project: $n, limitBytes: $b) "
                             "{ id position } }")
