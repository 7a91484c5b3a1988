// The GraphQL documents the app sends; one fragment for a task as every list shows it. The first screen's
// (who am I, the step page) are in first-read.js, which sends them before this file is even read.
import { METRICS } from "./first-read.js";

export { METRICS, ME, STEP, STEP_ROW, stepVariables } from "./first-read.js";

export const TASK_ROW = `
fragment TaskRow on Task {
  id kind type schemaType name title description status displayStatus priority revision
  assignedRole assignedGroup createdAt updatedAt dueAt completedAt
  assignee { id name }
  step { id title }
  workflowInstance { id definitionKey status }
  viewerCanClaim viewerCanComplete viewerCanAssign viewerCanRetry
}`;

export const EVENTS = `
subscription Events($after: String) {
  taskEvents(after: $after) {
    cursor kind occurredAt
    actor { id name }
    task { ...TaskRow step { id title ${METRICS} } }
  }
}
${TASK_ROW}`;

export const MESSAGES = `
subscription Messages($taskId: ID!) {
  taskMessages(taskId: $taskId) { id body postedAt author { id name } }
}`;

export const INBOX = `
query Inbox($filter: TaskFilter, $order: TaskOrder, $first: Int!, $after: String) {
  tasks(filter: $filter, orderBy: $order, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ...TaskRow } }
  }
}
${TASK_ROW}`;

export const TASK = `
query Task($id: ID!) {
  task(id: $id) {
    ...TaskRow input output draft
    completedBy { id name }
    form { fields { key type label required options mask multiline } }
    documentRequirements { key label accept minFiles maxFiles maxBytes }
    documents { id requirementKey filename contentType size uploadedAt url uploadedBy { id name } }
    attempts { number startedAt finishedAt request response error }
    workflowInstance { id definitionKey status data }
  }
}
${TASK_ROW}`;

export const TASK_MESSAGES = `
query TaskMessages($id: ID!) {
  task(id: $id) { id messages { id body postedAt author { id name } } }
}`;

export const INSTANCE = `
query Instance($id: ID!) {
  workflowInstance(id: $id) {
    id definitionKey definitionVersion status startedAt completedAt data
    startedBy { id name }
    milestones { key title steps { id key title ${METRICS} } }
    tasks { ...TaskRow }
  }
}
${TASK_ROW}`;

const RESULT = `
  __typename
  ... on Error { code message }
  ... on ValidationFailed { fieldErrors { field code message } }`;

export const TASK_RESULT = `${RESULT} ... on TaskSuccess { task { ...TaskRow input output draft completedBy { id name } } }`;

export const mutation = (name, inputType) => `
mutation ${name}($input: ${inputType}!) {
  ${name[0].toLowerCase()}${name.slice(1)}(input: $input) { ${TASK_RESULT} }
}
${TASK_ROW}`;

export const SAVE = mutation("SaveTaskProgress", "SaveTaskProgressInput");
export const SUBMIT = mutation("SubmitTask", "SubmitTaskInput");
export const APPROVE = mutation("ApproveTask", "DecideTaskInput");
export const REJECT = mutation("RejectTask", "DecideTaskInput");
export const CLAIM = mutation("ClaimTask", "ClaimTaskInput");
export const ASSIGN = mutation("AssignTask", "AssignTaskInput");
export const RETRY = mutation("RetryTask", "RetryTaskInput");
export const DECIDE_ACTION = mutation("DecideActionApproval", "DecideActionApprovalInput");

export const POST_MESSAGE = `
mutation PostTaskMessage($input: PostTaskMessageInput!) {
  postTaskMessage(input: $input) {
    ${RESULT}
    ... on TaskMessageSuccess { posted: message { id body postedAt author { id name } } }
  }
}`;

export const UPLOAD = `
mutation Upload($taskId: ID!, $requirementKey: String!, $files: [Upload!]!) {
  uploadTaskDocuments(input: {taskId: $taskId, requirementKey: $requirementKey, files: $files}) {
    ${RESULT}
    ... on DocumentsSuccess { task { id revision } documents { id requirementKey filename contentType size uploadedAt url uploadedBy { id name } } }
  }
}`;

export const DEFINITIONS = `query Definitions { workflowDefinitions { key version title definition viewerCanStart } }`;

export const START = `
mutation Start($input: StartWorkflowInput!) {
  startWorkflow(input: $input) {
    ${RESULT}
    ... on StartWorkflowSuccess { workflowInstance { id } }
  }
}`;

export const DEV_USERS = `query DevUsers { devUsers { id name roles groups } }`;
export const DEV_SIGN_IN = `
mutation DevSignIn($input: DevSignInInput!) {
  devSignIn(input: $input) {
    __typename ... on Error { code message }
    ... on DevSignInSuccess { token user { id name roles groups } }
  }
}`;
export const USERS = `query Users { users { __typename ... on UserList { users { id name roles groups } } ... on Error { message } } }`;
