// Drives oauth2gate's real login and consent pages with Debian's chromium, as a user would:
// open the authorization URL, type the username and password into the fields their labels name,
// click "Sign in", then click the consent page's Allow or Deny button, and report where the
// browser was sent. Run by tests/chromium_test.go.
//
// stdin:  one JSON object {authorize_url, redirect_uri, username, password, decision: "allow"|"deny"}
// stdout: one JSON line, either
//   {"outcome":"redirect", "url": <the redirect_uri the browser was sent to, with its parameters>, ...}
//   {"outcome":"login_error", "error": <the alert the login page shows>, "html": <the page>, ...}
// Anything else (an error page, a form missing, a timeout) exits 1 with "ERROR: …" on stderr.
import { chromium } from 'playwright-core';

const STEP_TIMEOUT = 15_000;

// Unexpected is what the browser saw that a user would not: the script reports it and exits 1.
class Unexpected extends Error {}
function fail(msg) {
  throw new Unexpected(msg);
}

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { authorize_url: authorizeURL, redirect_uri: redirectURI, username, password, decision } = JSON.parse(input);
if (!authorizeURL || !redirectURI || !username || !password || !['allow', 'deny'].includes(decision)) {
  process.stderr.write('ERROR: stdin needs authorize_url, redirect_uri, username, password and decision (allow or deny)\n');
  process.exit(2);
}

// The redirect_uri itself, or it with parameters.
const isCallback = (u) => {
  const s = u.toString();
  return s === redirectURI || s.startsWith(redirectURI + '?') || s.startsWith(redirectURI + '#');
};

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  // playwright-core gives every launch a fresh temporary --user-data-dir.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = { steps: [], console: [] };
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  // Console errors: a CSP violation or a failed subresource on the pages shows up here.
  page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));

  // Every main-frame document response, as "status METHOD path", for the steps of the report.
  let hops = [];
  page.on('response', (resp) => {
    const req = resp.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) hops.push(`${resp.status()} ${req.method()} ${new URL(req.url()).pathname}`);
  });
  // The first main-frame navigation to the redirect_uri. It comes as the target of a 302/303,
  // which playwright cannot route, so the request event is what counts: whether anything answers
  // there does not matter.
  let callback = null;
  let reached;
  const callbackSeen = new Promise((resolve) => { reached = resolve; });
  page.on('request', (req) => {
    if (callback === null && req.isNavigationRequest() && req.frame() === page.mainFrame() && isCallback(req.url())) {
      callback = req.url();
      reached(callback);
    }
  });

  // act runs a user action and waits until it ends on a loaded page or at the redirect_uri.
  const act = async (what, action) => {
    hops = [];
    const loaded = page.waitForEvent('load', { timeout: STEP_TIMEOUT });
    loaded.catch(() => {});
    // A click that sends the browser to the redirect_uri waits for that navigation to commit,
    // which it need not: the request is enough.
    const done = action().then(() => loaded).then(() => 'page');
    done.catch(() => {});
    const ended = await Promise.race([callbackSeen.then(() => 'callback'), done])
      .catch((e) => fail(`${what}: no page loaded and no redirect to ${redirectURI}: ${e.message}`));
    result.steps.push(`${what}: ${[...hops, ended === 'callback' ? 'redirect_uri' : `shows "${await page.title()}"`].join(', ')}`);
    return ended;
  };

  // describe names the page the browser shows, for failure messages.
  const describe = async () => {
    const text = await page.locator('body').innerText().catch(() => '');
    return `${page.url()} "${await page.title()}": ${text.replace(/\s+/g, ' ').slice(0, 400)}`;
  };
  const isLoginPage = async () =>
    (await page.getByRole('heading', { name: 'Sign in' }).count()) === 1 &&
    (await page.getByLabel('Password', { exact: true }).count()) === 1;
  const isConsentPage = async () =>
    (await page.getByRole('heading', { name: 'Allow access?' }).count()) === 1 &&
    (await page.getByRole('button', { name: 'Allow', exact: true }).count()) === 1 &&
    (await page.getByRole('button', { name: 'Deny', exact: true }).count()) === 1;

  const finish = (outcome, extra) => {
    Object.assign(result, { outcome }, extra);
    process.stdout.write(JSON.stringify(result) + '\n');
  };
  const redirected = async () => {
    result.cookies = (await context.cookies()).map(({ name, path, httpOnly, secure, sameSite }) => ({ name, path, httpOnly, secure, sameSite }));
    finish('redirect', { url: callback });
  };

  const first = await act('open the authorization URL', () => page.goto(authorizeURL, { waitUntil: 'commit' }));
  if (first === 'callback') fail(`the authorization URL redirected straight to the client (${callback}) without a login page`);
  if (!(await isLoginPage())) fail(`want the login page, got ${await describe()}`);

  // Typed key by key, as a user would (characters off the keyboard, like ä, arrive as text input).
  await page.getByLabel('Username', { exact: true }).pressSequentially(username);
  await page.getByLabel('Password', { exact: true }).pressSequentially(password);
  let ended = await act('sign in', () => page.getByRole('button', { name: 'Sign in' }).click());
  if (ended === 'callback') {
    await redirected(); // a client that skips consent
  } else if (await isLoginPage()) {
    const alert = page.getByRole('alert');
    if ((await alert.count()) !== 1) fail(`the login page came back without an error message: ${await describe()}`);
    finish('login_error', {
      error: (await alert.innerText()).trim(),
      url: page.url(),
      username_field: await page.getByLabel('Username', { exact: true }).inputValue(),
      password_field: await page.getByLabel('Password', { exact: true }).inputValue(),
      html: await page.content(),
    });
  } else if (await isConsentPage()) {
    result.consent = {
      client: (await page.locator('.client').innerText()).trim(),
      user: (await page.locator('strong').first().innerText()).trim(),
      scopes: (await page.locator('ul.scopes li').allInnerTexts()).map((s) => s.trim()),
    };
    const button = decision === 'allow' ? 'Allow' : 'Deny';
    ended = await act(`click ${button}`, () => page.getByRole('button', { name: button, exact: true }).click());
    if (ended !== 'callback') fail(`clicking ${button} did not send the browser to ${redirectURI}: ${await describe()}`);
    await redirected();
  } else {
    fail(`after signing in, want the consent page, the redirect or the login page with an error, got ${await describe()}`);
  }
} catch (e) {
  process.stderr.write(`ERROR: ${e instanceof Unexpected ? '' : 'playwright: '}${e.message}\nsteps: ${result.steps.join('; ')}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
