// The README's quick-start flow through a client generated from specs/openapi.json, then a
// few writes and reads asked for the response envelope (Accept: application/vnd.todo.envelope+json).
// Usage: TODO_API_URL=http://127.0.0.1:8000 TODO_API_USER=alice TODO_API_TOKEN=... node dist/flow.js
// Exits 1 at the first status or shape that differs from the contract.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type Task = Schemas["TaskPublic"];
type Problem = Schemas["ProblemDetail"];

/** The plain answers' media types. Each response also documents the envelope's; without this
 * second type argument openapi-fetch types every body as the union of the two. */
type Plain = "application/json" | "application/problem+json";

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
  parent_id: "string|null",
  tags: "object",
  created_at: "string",
  updated_at: "string",
  version: "number",
};

function problem(error: Problem | undefined, response: Response, code: string, what: string): void {
  const type = response.headers.get("content-type") ?? "";
  check(type.startsWith("application/problem+json"), `${what}: content-type ${type}`);
  problemDocument(error, response, code, what);
}

/** The RFC 9457 document itself, whatever carries it (the plain answer or the envelope's `error`). */
function problemDocument(error: Problem | undefined, response: Response, code: string, what: string): void {
  shape(error, { type: "string", title: "string", status: "number", detail: "string", code: "string" }, what);
  check(error?.code === code, `${what}: code ${error?.code}, expected ${code}`);
  check(error.status === response.status, `${what}: body status ${error.status} differs from ${response.status}`);
}

const ENVELOPE = "application/vnd.todo.envelope+json";
type Icon = Schemas["Popup"]["icon"];

/** What openapi-fetch makes of every envelope schema: its `Readable<>` drops the keys typed
 * only `null` (a success's `error`, an error's `data`, both for a 200 instead of a 204). */
type Enveloped = { success: boolean; popup: Schemas["Popup"] | null };

/** A key the generated type leaves out, read for the runtime check only. */
function field(body: object, name: string): unknown {
  return (body as Record<string, unknown>)[name];
}

/** An enveloped answer: its media type, exactly the four keys, `success` as expected, `error`
 * (on success) or `data` (on error) null, and the popup (null, or one with that icon). */
function envelope<T extends Enveloped>(
  body: T | undefined,
  response: Response,
  success: boolean,
  icon: Icon | null,
  what: string,
): asserts body is T {
  const type = response.headers.get("content-type") ?? "";
  check(type.startsWith(ENVELOPE), `${what}: content-type ${type}, expected ${ENVELOPE}`);
  check(typeof body === "object" && body !== null, `${what}: no envelope`);
  const keys = Object.keys(body).sort().join(",");
  check(keys === "data,error,popup,success", `${what}: keys ${keys}, expected data,error,popup,success`);
  check(body.success === success, `${what}: success ${body.success}, expected ${success}`);
  const empty = success ? "error" : "data";
  check(field(body, empty) === null, `${what}: ${empty} ${JSON.stringify(field(body, empty))}, expected null`);
  if (icon === null) {
    check(body.popup === null, `${what}: popup ${JSON.stringify(body.popup)}, expected null`);
  } else {
    shape(body.popup, { icon: "string", title: "string", text: "string" }, `${what}: popup`);
    check(body.popup?.icon === icon, `${what}: popup icon ${body.popup?.icon}, expected ${icon}`);
  }
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
  const api = createClient<paths, Plain>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const path = { user_id };

  // Without a token: 401 not_authenticated, as problem+json.
  {
    const anonymous = createClient<paths, Plain>({ baseUrl });
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
        tags: index === 0 ? ["Errands"] : [],
        reminders: [],
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

  // A batch: a task and its subtask in one transaction, the second naming the first's id;
  // then the tag filter finds the subtask by a tag spelled otherwise.
  {
    const { data, response } = await api.POST("/api/{user_id}/batch", {
      params: { path },
      body: {
        atomic: true,
        operations: [
          { id: "trip", method: "POST", path: "/tasks", body: { title: "Trip" } },
          { id: "flights", method: "POST", path: "/tasks", body: { title: "Flights", parent_id: "$trip", tags: ["Travel"] } },
        ],
      },
    });
    status(response, 200, "POST /batch");
    check(data?.committed === true, `batch: committed ${data?.committed}`);
    const [trip, flights] = data.results;
    check(trip?.status === 201 && flights?.status === 201, "batch: statuses");
    const child = flights.body as Task;
    check(child.parent_id === (trip.body as Task).id, "batch: the subtask's parent");
    const tagged = await api.GET("/api/{user_id}/tasks", { params: { path, query: { tag: ["TRAVEL"] } } });
    status(tagged.response, 200, "GET /tasks?tag");
    check(tagged.data?.items.length === 1 && tagged.data.items[0]?.id === child.id, "tag filter: the subtask");
    check(JSON.stringify(tagged.data.items[0]?.tags) === '["Travel"]', "tag filter: its tags");
  }

  // A recurring task: completing it moves it to its next occurrence, 09:00 in Paris
  // across the March change (its UTC hour moves).
  {
    const recurrence = { rule: "FREQ=WEEKLY;BYDAY=MO", tz: "Europe/Paris", from: "due" as const };
    const reminders = [{ before: "PT15M" }];
    const body = { title: "Water the plants", priority: "none" as const, due_at: "2027-03-22T08:00:00Z", tags: [], recurrence, reminders };
    const { data: weekly, response } = await api.POST("/api/{user_id}/tasks", { params: { path }, body });
    status(response, 201, "POST /tasks (recurring)");
    check(weekly !== undefined, "recurring: created");
    const task = { user_id, task_id: weekly.id };
    const moved = await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: { path: task } });
    status(moved.response, 200, "PATCH complete (recurring)");
    check(moved.data?.completed === false && moved.data.due_at === "2027-03-29T07:00:00Z", `recurring: moved to ${moved.data?.due_at}`);
    const next = await api.GET("/api/{user_id}/tasks/{task_id}/occurrences", { params: { path: task, query: { limit: 2 } } });
    status(next.response, 200, "GET /tasks/{task_id}/occurrences");
    const locals = next.data?.items.map((occurrence) => occurrence.local).join(" ");
    check(locals === "2027-03-29T09:00:00 2027-04-05T09:00:00", `occurrences: ${locals}`);
  }

  console.log(`client flow passed: ${TASK_TITLES.length} tasks in ${pages} pages, completed, history, stats, batch, tags, recurrence`);

  await envelopeFlow(baseUrl, user_id, token);
}

/** The same API asked for the envelope: `{success, data, popup, error}` around each answer. */
async function envelopeFlow(baseUrl: string, user_id: string, token: string): Promise<void> {
  // The envelope's media type as the client's second type argument: each body is typed from
  // that media type's schema (`EnvelopeWithPopup_TaskPublic_`, `Envelope_ProblemDetail_`). openapi-fetch
  // parses a body as JSON whatever its content-type (parseAs "json"): a 2xx into `data`, any
  // other status into `error`, so an error's envelope is `error` and its problem `error.error`.
  const api = createClient<paths, typeof ENVELOPE>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}`, Accept: ENVELOPE },
  });
  const title = "Buy milk";

  // Created: 201, the task as `data`, a success popup, the plain answer's headers.
  const task_id = await (async () => {
    const { data, response } = await api.POST("/api/{user_id}/tasks", {
      params: { path: { user_id } },
      body: { title, priority: "none", tags: [], reminders: [] },
    });
    status(response, 201, "envelope: POST /tasks");
    envelope(data, response, true, "success", "envelope: created task");
    const task: Task | undefined = data.data;
    shape(task, TASK_FIELDS, "envelope: created task's data");
    check(task?.title === title && task.version === 1, `envelope: created task ${JSON.stringify(task)}`);
    check(data.popup?.title === "Task created", `envelope: created task's popup title ${data.popup?.title}`);
    check(data.popup.text.includes(title), `envelope: created task's popup text ${data.popup.text}`);
    check(response.headers.get("location")?.endsWith(`/tasks/${task.id}`), "envelope: created task's Location header");
    return task.id;
  })();
  const path = { user_id, task_id };

  // A stale If-Match: 412, the problem as `error`, a warning popup, the current ETag.
  {
    const { error, response } = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
      params: { path, header: { "If-Match": '"999"' } },
      body: { title: "Buy oat milk" },
    });
    status(response, 412, 'envelope: PATCH /tasks/{task_id} with If-Match "999"');
    envelope(error, response, false, "warning", "envelope: stale If-Match");
    const document: Problem | undefined = error.error;
    problemDocument(document, response, "precondition_failed", "envelope: stale If-Match");
    check(response.headers.get("etag") === '"1"', `envelope: stale If-Match's ETag ${response.headers.get("etag")}`);
  }

  // Deleted: 200 where the plain answer is 204, `data` null, a success popup.
  {
    const { data, response } = await api.DELETE("/api/{user_id}/tasks/{task_id}", { params: { path } });
    status(response, 200, "envelope: DELETE /tasks/{task_id}");
    envelope(data, response, true, "success", "envelope: deleted task");
    check(field(data, "data") === null, `envelope: deleted task's data ${JSON.stringify(field(data, "data"))}`);
    check(data.popup?.title === "Task deleted", `envelope: deleted task's popup title ${data.popup?.title}`);
  }

  // Gone: 404 not_found, an error popup.
  {
    const { error, response } = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path } });
    status(response, 404, "envelope: GET the deleted task");
    envelope(error, response, false, "error", "envelope: deleted task read");
    problemDocument(error.error, response, "not_found", "envelope: deleted task read");
  }

  console.log("envelope flow passed: created (201), stale If-Match (412), deleted (200), gone (404)");
}

main().catch((error: unknown) => {
  console.error(`client flow FAILED: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
