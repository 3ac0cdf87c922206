"""The GraphQL documents the CLI sends, in one place."""

SESSION_FIELDS = """
  id name owner image sessionType status statusReason statusDetail clusterSize requestedSlots
  agentIds createdAt updatedAt terminatedAt statusHistory
  domain project resourceGroup priority pendingCode pendingReason
  mounts { name folderId volume target permission }
"""

KERNEL_FIELDS = "id clusterRole clusterIdx agentId status statusReason statusDetail containerId exitCode slots"

TERMINATE_SESSION = """
mutation($id: String!) { terminateSession(sessionId: $id) { sessionId position } }
"""

SESSION = (
    "query($id: String!, $after: Int) { session(id: $id, afterPosition: $after) {"
    + SESSION_FIELDS
    + " kernels { "
    + KERNEL_FIELDS
    + " } } }"
)

SESSION_ID = "query($id: String!) { session(id: $id) { id } }"
"""The id of the session an id, unique id prefix or name means (null when none)."""

SESSIONS = (
    "query($status: [String!], $first: Int, $after: String, $newestFirst: Boolean! = false) {"
    " sessions(status: $status, first: $first, after: $after, newestFirst: $newestFirst) { edges { "
    + SESSION_FIELDS
    + " } endCursor hasNextPage } }"
)

AGENTS = "query { agents { id hostname backend resourceGroup status capacity occupied kernelCount registeredAt } }"

USAGE = "query { quotaUsage { scope name used sessions limit maxSessions } }"

EVENTS = """
query($aggregateId: String, $after: Int, $first: Int, $since: DateTime, $until: DateTime, $before: Int,
      $newestFirst: Boolean! = false) {
  events(aggregateId: $aggregateId, afterPosition: $after, first: $first, since: $since, until: $until,
         beforePosition: $before, newestFirst: $newestFirst) {
    position type aggregateId aggregateVersion occurredAt actor payload
  }
}
"""

SESSION_STATUS = """
subscription($id: String!) {
  sessionStatus(sessionId: $id) { status statusReason statusDetail pendingReason position occurredAt }
}
"""

EXECUTE = """
subscription($id: String!, $code: String!, $mode: String!, $stdin: String, $argv: [String!], $detach: Boolean = false) {
  execute(sessionId: $id, code: $code, mode: $mode, stdin: $stdin, argv: $argv, detach: $detach, announce: true) {
    runId kind data exitCode durationMs truncated
  }
}
"""

INTERRUPT_EXECUTION = "mutation($id: String!, $runId: String!) { interruptExecution(sessionId: $id, runId: $runId) }"

SESSION_LOGS = "query($id: String!) { sessionLogs(sessionId: $id) }"

SESSION_BRIEF = "query($id: String!) { session(id: $id) { id name status statusReason statusDetail pendingReason } }"
"""A session's id, name and status with its reason, by any reference (null when none)."""
