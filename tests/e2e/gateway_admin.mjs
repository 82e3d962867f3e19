// Drives the gateway's admin dashboard in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium). Input (env): ADMIN_URL, PUBLIC_URL, ADMIN_PW, SEEN_ID (a request id the
// test made just before), SHOT (screenshot path). Prints one JSON object of observations.
import { chromium } from "playwright-core";

const out = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  // 401/403 answers the test provokes show up as "Failed to load resource"; anything else counts
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(new URL(process.env.ADMIN_URL).origin)) external.push(r.url()); });

  await page.goto(process.env.ADMIN_URL);
  await page.waitForSelector("#login-form", { state: "visible" });

  // wrong password
  await page.fill("#password", "not-the-password");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.getElementById("login-error").textContent !== "");
  out.wrong_password_error = await page.textContent("#login-error");
  out.dashboard_visible_after_wrong = await page.isVisible("#dash-view");

  // right password
  await page.fill("#password", process.env.ADMIN_PW);
  await page.click("#login-form button");
  await page.waitForSelector("#dash-view", { state: "visible" });
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === "sipp_admin");
  out.cookie = c ? { httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path } : null;

  // the request made just before shows up in "recent"
  await page.waitForFunction((id) => document.querySelector("#recent tbody").textContent.includes(id),
    process.env.SEEN_ID, { timeout: 10000 });
  out.saw_request = true;
  out.callers_table = await page.textContent("#callers tbody");
  out.latency_text = await page.textContent("#lat");

  // a mutation without the CSRF header is refused (same origin, with the session cookie)
  out.csrf_less = await page.evaluate(async () => {
    const r = await fetch("api/settings", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ max_concurrent_requests: 1 }) });
    return { status: r.status, body: await r.json() };
  });
  out.wrong_csrf = await page.evaluate(async () => {
    const r = await fetch("api/settings", { method: "POST",
      headers: { "content-type": "application/json", "x-sipp-admin-csrf": "guessed" },
      body: JSON.stringify({ max_concurrent_requests: 1 }) });
    return r.status;
  });

  // change the per-IP rate limit in the form and see it take effect on the public listener
  const before = [];
  for (let i = 0; i < 3; i++) before.push((await fetch(process.env.PUBLIC_URL + "/v1/models")).status);
  out.before = before;
  await page.check("#rl-enabled");
  await page.fill("#rl-rpm", "2");
  await page.fill("#rl-burst", "2");
  await page.fill("#rl-tpm", "0");
  await page.click("#settings-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("settings-status").textContent === "Saved.");
  const after = [];
  for (let i = 0; i < 3; i++) after.push((await fetch(process.env.PUBLIC_URL + "/v1/models")).status);
  out.after = after;
  // the refusals show up on the dashboard too
  await page.waitForFunction(() => document.querySelector("#recent tbody").textContent.includes("rate_limited"),
    null, { timeout: 10000 });
  out.page_text = await page.textContent("body");
  await page.screenshot({ path: process.env.SHOT, fullPage: true });
  out.console_errors = consoleErrors;
  out.external_requests = external;

  // log out: the session is gone
  await page.click("#logout");
  await page.waitForSelector("#login-form", { state: "visible" });
  out.after_logout = await page.evaluate(async () => (await fetch("api/state")).status);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
