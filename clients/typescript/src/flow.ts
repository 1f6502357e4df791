// The README's quick-start flow through a client generated from specs/openapi.json.
// Usage: TODO_API_URL=http://127.0.0.1:8000 TODO_API_USER=alice TODO_API_TOKEN=... node dist/flow.js
// Exits 1 at the first status or shape that differs from the contract.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type Task = Schemas["TaskPublic"];
type Problem = Schemas["ProblemDetail"];

const PAGE_SIZE = 2;
const TASK_TITLES = ["Buy milk", "Write the report", "Call the plumber", "Book flights", "Water plants"];

class Mismatch extends Error {}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Mismatch(message);
}

function status(response: Response, expected: number, what: string): void {
  check(response.status === expected, `${what}: status ${response.status}, expected ${expected}`);
}

type Kind = "string" | "number" | "boolean" | "object" | "string|null";

/** Runtime shape check: the types say what the document promises, this checks the server keeps it. */
function shape(value: unknown, fields: Record<string, Kind>, what: string): void {
  check(typeof value === "object" && value !== null, `${what}: not an object`);
  const record = value as Record<string, unknown>;
  for (const [name, kind] of Object.entries(fields)) {
    const actual = record[name];
    const ok = kind === "string|null" ? actual === null || typeof actual === "string" : typeof actual === kind && actual !== null;
    check(ok, `${what}: field ${name} is ${JSON.stringify(actual)}, expected ${kind}`);
  }
}

const TASK_FIELDS: Record<string, Kind> = {
  id: "string",
  title: "string",
  description: "string|null",
  completed: "boolean",
  completed_at: "string|null",
  priority: "string",
  due_at: "string|null",
  category_id: "string|null",
  created_at: "string",
  updated_at: "string",
  version: "number",
};

function problem(error: Problem | undefined, response: Response, code: string, what: string): void {
  const type = response.headers.get("content-type") ?? "";
  check(type.startsWith("application/problem+json"), `${what}: content-type ${type}`);
  shape(error, { type: "string", title: "string", status: "number", detail: "string", code: "string" }, what);
  check(error?.code === code, `${what}: code ${error?.code}, expected ${code}`);
  check(error.status === response.status, `${what}: body status ${error.status} differs from ${response.status}`);
}

function environment(name: string): string {
  const value = process.env[name];
  if (!value) throw new Mismatch(`set ${name}`);
  return value;
}

async function main(): Promise<void> {
  const baseUrl = environment("TODO_API_URL");
  const user_id = environment("TODO_API_USER");
  const token = environment("TODO_API_TOKEN");
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const path = { user_id };

  // Without a token: 401 not_authenticated, as problem+json.
  {
    const anonymous = createClient<paths>({ baseUrl });
    const { error, response } = await anonymous.GET("/api/{user_id}/me", { params: { path } });
    status(response, 401, "GET /me without a token");
    problem(error, response, "not_authenticated", "GET /me without a token");
  }

  // A category.
  const category = await (async () => {
    const { data, response } = await api.POST("/api/{user_id}/categories", {
      params: { path },
      body: { name: "Errands", color: "#3366ff" },
    });
    status(response, 201, "POST /categories");
    shape(data, { id: "string", name: "string", color: "string|null", version: "number" }, "category");
    check(data?.name === "Errands" && data.color === "#3366ff", "category: fields not as sent");
    check(response.headers.get("location")?.endsWith(`/categories/${data.id}`), "category: Location header");
    return data;
  })();

  // Tasks: the first with an Idempotency-Key, sent twice, must be created once.
  const created: Task[] = [];
  for (const [index, title] of TASK_TITLES.entries()) {
    const request = {
      params: { path, header: { "Idempotency-Key": `flow-${user_id}-${index}` } },
      body: {
        title,
        priority: index === 0 ? ("high" as const) : ("none" as const),
        category_id: index < 2 ? category.id : null,
      },
    };
    const { data, response } = await api.POST("/api/{user_id}/tasks", request);
    status(response, 201, `POST /tasks (${title})`);
    shape(data, TASK_FIELDS, "task");
    check(data?.title === title && data.completed === false && data.version === 1, "task: fields");
    check(response.headers.get("location")?.endsWith(`/tasks/${data.id}`), "task: Location header");
    created.push(data);
    if (index === 0) {
      const replay = await api.POST("/api/{user_id}/tasks", request);
      status(replay.response, 201, "POST /tasks retried with the same Idempotency-Key");
      check(replay.data?.id === data.id, "idempotent retry: a second task was created");
      check(replay.response.headers.get("idempotent-replayed") === "true", "idempotent retry: header");
    }
  }

  // The list, page by page, newest first, following next_cursor.
  const listed: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query: { limit: number; cursor?: string } = { limit: PAGE_SIZE };
    if (cursor !== null) query.cursor = cursor;
    const { data, response } = await api.GET("/api/{user_id}/tasks", { params: { path, query } });
    status(response, 200, `GET /tasks page ${pages + 1}`);
    check(data !== undefined && Array.isArray(data.items), "page: no items");
    check(data.items.length <= PAGE_SIZE, `page: ${data.items.length} items, limit ${PAGE_SIZE}`);
    for (const item of data.items) shape(item, TASK_FIELDS, "listed task");
    listed.push(...data.items.map((item) => item.id));
    cursor = data.next_cursor ?? null;
    pages += 1;
    check(pages <= TASK_TITLES.length, "pagination: next_cursor never ends");
  } while (cursor !== null);
  const newestFirst = created.map((task) => task.id).reverse();
  check(JSON.stringify(listed) === JSON.stringify(newestFirst), `pagination: got ${listed}, expected ${newestFirst}`);
  check(pages === Math.ceil(TASK_TITLES.length / PAGE_SIZE), `pagination: ${pages} pages`);

  // Filters: the category's tasks.
  {
    const { data, response } = await api.GET("/api/{user_id}/tasks", {
      params: { path, query: { category_id: category.id } },
    });
    status(response, 200, "GET /tasks?category_id");
    check(data?.items.length === 2, `category filter: ${data?.items.length} tasks, expected 2`);
  }

  // Complete the first task, conditionally on the version just read.
  const first = created[0];
  check(first !== undefined, "no task created");
  const task_id = first.id;
  const etag = await (async () => {
    const { data, response } = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path: { user_id, task_id } } });
    status(response, 200, "GET /tasks/{task_id}");
    check(data?.id === task_id, "get task: wrong task");
    const tag = response.headers.get("etag");
    check(tag !== null, "get task: no ETag");
    return tag;
  })();
  {
    const { data, response } = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
      params: { path: { user_id, task_id }, header: { "If-Match": etag } },
    });
    status(response, 200, "PATCH /tasks/{task_id}/complete");
    shape(data, TASK_FIELDS, "completed task");
    check(data?.completed === true && data.completed_at !== null && data.version === 2, "complete: fields");
  }
  {
    const { error, response } = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
      params: { path: { user_id, task_id }, header: { "If-Match": etag } },
      body: { title: "Buy oat milk" },
    });
    status(response, 412, "PATCH /tasks/{task_id} with a stale If-Match");
    problem(error, response, "precondition_failed", "stale If-Match");
  }

  // Its history, newest first.
  {
    const { data, response } = await api.GET("/api/{user_id}/tasks/{task_id}/history", {
      params: { path: { user_id, task_id } },
    });
    status(response, 200, "GET /tasks/{task_id}/history");
    check(data !== undefined, "history: no body");
    for (const entry of data.items) {
      shape(entry, { id: "string", task_id: "string", action: "string", changes: "object", title: "string", occurred_at: "string" }, "history entry");
    }
    const actions = data.items.map((entry) => entry.action);
    check(JSON.stringify(actions) === '["completed","created"]', `history: actions ${actions}`);
  }

  // Someone else's (or no) task: 404 not_found.
  {
    const missing = "00000000-0000-7000-8000-000000000000";
    const { error, response } = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path: { user_id, task_id: missing } } });
    status(response, 404, "GET /tasks/{missing}");
    problem(error, response, "not_found", "missing task");
  }

  // The weekly statistics.
  {
    const { data, response } = await api.GET("/api/{user_id}/stats/weekly", {
      params: { path, query: { tz: "Europe/Paris" } },
    });
    status(response, 200, "GET /stats/weekly");
    shape(data, { tz: "string", from: "string", to: "string", created: "number", completed: "number", open: "number", overdue: "number", completion_rate: "number" }, "weekly stats");
    check(data?.tz === "Europe/Paris" && data.days.length === 7, "stats: tz or days");
    for (const day of data.days) shape(day, { date: "string", created: "number", completed: "number" }, "stats day");
    const total = TASK_TITLES.length;
    check(data.created === total && data.completed === 1 && data.open === total - 1, `stats: ${JSON.stringify(data)}`);
    check(data.days.reduce((sum, day) => sum + day.created, 0) === total, "stats: days do not add up");
  }

  console.log(`client flow passed: ${TASK_TITLES.length} tasks in ${pages} pages, completed, history, stats`);
}

main().catch((error: unknown) => {
  console.error(`client flow FAILED: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
