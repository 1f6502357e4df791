// Opens the page in headless Chromium against a live API on another origin, creates a
// task from outside the browser, and checks that the page shows it within 2 s.
// Usage: WEB_URL=... API_URL=... API_USER=... API_TOKEN=... SCREENSHOT=... node proof.mjs
import puppeteer from "puppeteer-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const [web, api, user, token] = ["WEB_URL", "API_URL", "API_USER", "API_TOKEN"].map(env);
const fragment = new URLSearchParams({ api, user, token });

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  await page.goto(`${web}/index.html#${fragment}`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "live", {
    timeout: 10_000,
  });

  const title = `Made elsewhere ${Date.now()}`;
  const created = await fetch(`${api}/api/${encodeURIComponent(user)}/tasks`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ title }),
  });
  if (created.status !== 201) throw new Error(`create: ${created.status}`);
  const started = Date.now();
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll("#tasks li")].some((li) => li.textContent === wanted),
    { timeout: 2_000 },
    title,
  );
  const seenIn = Date.now() - started;
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  console.log(`web proof passed: the page showed a task created elsewhere after ${seenIn} ms`);
} finally {
  await browser.close();
}
