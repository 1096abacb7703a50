// Drives the example single-page app (docs/spa) in Debian's chromium, across origins, as a user
// and as its scripts would: the app on one origin, oauth2gate and the guarded API on others.
// Run by tests/spa_test.go.
//
// stdin:  one JSON object {app_url, username, password, steps: [...], evil_url?, implicit_client_id?,
//         screenshot?}; the steps run in order:
//   code       click "Sign in", type the username and password on the real login page, allow on
//              the consent page; the app exchanges the code with fetch() and calls the API
//   screenshot save a PNG of the app to input.screenshot
//   refusal    the app calls the API with an unknown token and reads the 401's WWW-Authenticate;
//              then a fetch() with credentials: 'include', which the browser must block
//   refresh    the app refreshes (the refresh token must rotate), calls the API, then replays the
//              old refresh token and calls the API again
//   evil       from evil_url (an origin no client allows), scripts fetch the token endpoint, the
//              API and the JWKS
//   implicit   the app signs in with the implicit grant as implicit_client_id; it reads the token
//              from the fragment, checks the state and calls the API
//   inject     the app is opened with a token in the fragment and a state it never sent
//   revoke     the app revokes its access token at the revocation endpoint and calls the API
//   signout    the app's "Sign out" (revokes the refresh token)
// stdout: one JSON line {steps: {<name>: {...}}, log: [...], console: [...]}
// Anything unexpected (no login page, a timeout) exits 1 with "ERROR: …" on stderr.
import { chromium } from 'playwright-core';

const STEP_TIMEOUT = 20_000;
class Unexpected extends Error {}
const fail = (msg) => { throw new Unexpected(msg); };

let raw = '';
for await (const chunk of process.stdin) raw += chunk;
const input = JSON.parse(raw);
if (!input.app_url || !Array.isArray(input.steps)) {
  process.stderr.write('ERROR: stdin needs app_url and steps\n');
  process.exit(2);
}
const appOrigin = new URL(input.app_url).origin;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const result = { steps: {}, log: [], console: [] };
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));

  const describe = async (p = page) => {
    const text = await p.locator('body').innerText().catch(() => '');
    return `${p.url()} "${await p.title()}": ${text.replace(/\s+/g, ' ').slice(0, 400)}`;
  };
  const atApp = (u) => new URL(u).origin === appOrigin;
  // appReady waits until the app's start() has run on the current page.
  const appReady = async () => {
    await page.waitForFunction(() => window.spa && window.spa.ready);
    await page.evaluate(() => window.spa.ready);
  };
  const isLoginPage = async () => (await page.getByRole('heading', { name: 'Sign in' }).count()) === 1;
  const isConsentPage = async () => (await page.getByRole('heading', { name: 'Allow access?' }).count()) === 1;
  const appLog = () => page.evaluate(() => window.spa.events.slice());

  // clickAndLoad clicks and waits for the page that the click leads to.
  const clickAndLoad = async (locator) => {
    const loaded = page.waitForEvent('load');
    await locator.click();
    await loaded;
  };
  // authorize answers the login page (when there is one) and the consent page, and waits until
  // the browser is back at the app with the app's first API answer.
  const authorize = async () => {
    if (await isLoginPage()) {
      await page.getByLabel('Username', { exact: true }).pressSequentially(input.username);
      await page.getByLabel('Password', { exact: true }).pressSequentially(input.password);
      await clickAndLoad(page.getByRole('button', { name: 'Sign in' }));
    }
    if (!atApp(page.url())) {
      if (!(await isConsentPage())) fail(`want the consent page, got ${await describe()}`);
      await clickAndLoad(page.getByRole('button', { name: 'Allow', exact: true }));
    }
    if (!atApp(page.url())) fail(`want the app after consenting, got ${await describe()}`);
    await appReady();
    await page.waitForFunction(() => window.spa.answer !== null);
    return page.evaluate(() => ({ answer: window.spa.answer, scope: window.spa.scope, access: window.spa.access, refresh: window.spa.refresh, url: location.href, exchange: window.spa.exchange || null }));
  };

  const steps = {
    async code() {
      await page.goto(input.app_url);
      await appReady();
      await clickAndLoad(page.getByRole('button', { name: 'Sign in' }));
      const authorizeURL = page.url();
      const out = await authorize();
      out.authorize_url = authorizeURL;
      out.shown = { who: await page.locator('#who').innerText(), answer: await page.locator('#answer').innerText() };
      return out;
    },
    async screenshot() {
      await page.screenshot({ path: input.screenshot, fullPage: true });
      return { path: input.screenshot };
    },
    async refusal() {
      return page.evaluate(async () => {
        const spa = window.spa;
        const out = await spa.callApi('unknown-token-from-the-browser-0123456789');
        // With credentials the browser wants Allow-Credentials, which no answer carries.
        try {
          await fetch(spa.config.api + '/orders', { credentials: 'include', headers: { Authorization: `Bearer ${spa.access}` } });
          out.withCredentials = 'not blocked';
        } catch (e) {
          out.withCredentials = `${e.name}: ${e.message}`;
        }
        return out;
      });
    },
    async refresh() {
      return page.evaluate(async () => {
        const spa = window.spa;
        const old = spa.refresh;
        const first = await spa.refreshTokens(old);
        const after = await spa.callApi();
        const replay = await spa.refreshTokens(old);
        const afterReplay = await spa.callApi();
        return { old, first: { status: first.status, refresh: first.body.refresh_token, access: first.body.access_token, error: first.body.error },
          after: after.status, replay: { status: replay.status, error: replay.body && replay.body.error }, afterReplay: afterReplay.status };
      });
    },
    async evil() {
      const evil = await context.newPage();
      const messages = [];
      evil.on('console', (m) => messages.push(m.text()));
      await evil.goto(input.evil_url);
      await evil.waitForFunction(() => window.spa && window.spa.ready);
      await evil.evaluate(() => window.spa.ready);
      const out = await evil.evaluate(async () => {
        const spa = window.spa;
        const tryFetch = async (url, init) => {
          try {
            const r = await fetch(url, init);
            return { blocked: false, status: r.status };
          } catch (e) {
            return { blocked: true, error: `${e.name}: ${e.message}` };
          }
        };
        return {
          origin: location.origin,
          token: await tryFetch(spa.meta.token_endpoint, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x', client_id: spa.config.client_id }) }),
          api: await tryFetch(spa.config.api + '/orders', { headers: { Authorization: 'Bearer x' } }),
          jwks: await tryFetch(spa.meta.jwks_uri),
        };
      });
      out.console = messages;
      await evil.close();
      return out;
    },
    async implicit() {
      await page.goto(input.app_url);
      await appReady();
      const loaded = page.waitForEvent('load');
      await page.evaluate((id) => { window.spa.signIn(true, id); }, input.implicit_client_id);
      await loaded;
      const authorizeURL = page.url();
      const out = await authorize();
      out.authorize_url = authorizeURL;
      return out;
    },
    async inject() {
      // A link that lands on the app with someone else's token and a state it never sent (from
      // another page: a fragment change alone would not load the app again).
      await page.goto('about:blank');
      await page.goto(`${input.app_url}#access_token=injected-token-0123456789&token_type=Bearer&state=forged`);
      await appReady();
      return page.evaluate(() => ({ access: window.spa.access, events: window.spa.events.slice() }));
    },
    async revoke() {
      return page.evaluate(async () => {
        const spa = window.spa;
        const r = await fetch(spa.meta.revocation_endpoint, { method: 'POST', body: new URLSearchParams({ token: spa.access, client_id: spa.clientID }) });
        const api = await spa.callApi();
        return { status: r.status, api: api.status, wwwAuthenticate: api.wwwAuthenticate };
      });
    },
    async signout() {
      return page.evaluate(async () => {
        const r = await window.spa.signOut();
        return { status: r && r.status };
      });
    },
  };
  for (const name of input.steps) {
    if (!steps[name]) fail(`unknown step ${name}`);
    result.steps[name] = await steps[name]();
  }
  result.log = await appLog().catch(() => []);
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (e) {
  process.stderr.write(`ERROR: ${e instanceof Unexpected ? '' : 'playwright: '}${e.message}\nsteps so far: ${JSON.stringify(result.steps).slice(0, 2000)}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
