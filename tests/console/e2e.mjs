// End-to-end test of the maas console in headless Chromium, driven by playwright-core.
//
//   MAAS_E2E_PASSWORD=... MAAS_E2E_MODEL=tests/fixtures/iris_logreg.onnx \
//     node e2e.mjs http://127.0.0.1:8080 ../../target/console-screenshots
//
// It does what an operator does: log in, deploy iris (two versions) through the form, predict,
// roll back, pause (and see predicts refused), resume, read the audit trail and the drift page
// (events and each feature's baseline against the recent values), follow a job's page.
// A full-page screenshot of each page lands in the screenshot folder. Any failed check exits 1
// with what went wrong (and a screenshot of the page at that moment, console-failure.png).
//
// Env: CHROMIUM (default /usr/bin/chromium); MAAS_E2E_TRAINING_DATA (default iris_train.csv
// beside the model) for the drift baseline. iris_logreg_v2.onnx and iris_shifted.json are taken
// from beside the model too.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, shotsArg] = process.argv.slice(2);
if (!baseArg || !shotsArg) {
  console.error('usage: node e2e.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const shots = resolve(shotsArg);
const password = process.env.MAAS_E2E_PASSWORD;
const modelPath = process.env.MAAS_E2E_MODEL && resolve(process.env.MAAS_E2E_MODEL);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!password || !modelPath) {
  console.error('FAIL: set MAAS_E2E_PASSWORD (the admin password) and MAAS_E2E_MODEL (path to iris_logreg.onnx)');
  process.exit(2);
}
const fixtures = dirname(modelPath);
const trainingPath = resolve(process.env.MAAS_E2E_TRAINING_DATA || join(fixtures, 'iris_train.csv'));
const secondModelPath = join(fixtures, 'iris_logreg_v2.onnx');
const shiftedPath = join(fixtures, 'iris_shifted.json');
for (const [what, path] of [['the model', modelPath], ['its second version', secondModelPath], ['the training data', trainingPath], ['chromium', executablePath]]) {
  if (!existsSync(path)) {
    console.error(`FAIL: ${what} not found at ${path}`);
    process.exit(2);
  }
}
mkdirSync(shots, { recursive: true });

class CheckFailed extends Error {}
const check = (ok, message) => {
  if (!ok) throw new CheckFailed(message);
};

const started = Date.now();
let passed = 0;
async function step(name, work) {
  const t0 = Date.now();
  try {
    await work();
  } catch (e) {
    e.message = `${name}: ${e.message}`;
    throw e;
  }
  passed += 1;
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const context = await browser.newContext({ viewport: { width: 1380, height: 900 }, deviceScaleFactor: 1, acceptDownloads: true });
context.setDefaultTimeout(20000);
const page = await context.newPage();

// What the page must never do: throw, break its content security policy, or load anything from
// another origin.
const problems = [];
page.on('pageerror', (e) => problems.push(`uncaught exception in the page: ${e.message}`));
page.on('console', (msg) => {
  if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
});
page.on('request', (r) => {
  const url = r.url();
  if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`request to another origin: ${url}`);
});
const noProblems = () => check(problems.length === 0, problems.join('; '));

const shot = async (name) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, `console-${name}.png`), fullPage: true });
};
const text = (selector) => page.locator(selector).innerText();

/** Wait until `selector`'s text contains one of `wanted` (or an error box), and return the text. */
async function waitForText(selector, wanted, { failOn } = {}) {
  const handle = await page.waitForFunction(
    ([sel, words, bad]) => {
      const el = document.querySelector(sel);
      if (!el) return false;
      const t = el.innerText;
      if (words.some((w) => t.includes(w))) return t;
      if (bad && el.querySelector(bad)) return t;
      return false;
    },
    [selector, [wanted].flat(), failOn || null],
  );
  return handle.jsonValue();
}

async function predict(body, wanted) {
  if (body !== undefined) await page.fill('#predict-input', body);
  // The previous answer goes away first, so the wait below sees the new one.
  await page.evaluate(() => document.querySelector('#predict-output').replaceChildren());
  await page.click('#predict-run');
  const answer = await waitForText('#predict-output', wanted, { failOn: '.alert-error' });
  check([wanted].flat().some((w) => answer.includes(w)), `the predict answer should contain ${JSON.stringify(wanted)}, got: ${answer.slice(0, 400)}`);
  return answer;
}

async function clickAction(action, expectedState) {
  await page.click(`#service-actions [data-action="${action}"]`);
  await page.waitForFunction(
    ([state]) => document.querySelector('#model-state')?.innerText.trim() === state || document.querySelector('#action-result .alert-error'),
    [expectedState],
  );
  const error = await page.locator('#action-result .alert-error').count();
  check(error === 0, `${action} failed: ${error ? await text('#action-result') : ''}`);
  check((await text('#model-state')).trim() === expectedState, `after ${action} the state badge should say ${expectedState}`);
}

try {
  await step('the login form is served at /console', async () => {
    const response = await page.goto(`${base}/console`);
    check(response.ok(), `GET /console answered ${response.status()}`);
    await page.waitForSelector('#login-form');
    await shot('login');
  });

  await step('a wrong password is refused with the API error', async () => {
    await page.fill('#login-username', 'admin');
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-submit');
    const message = await waitForText('#login-message', 'unauthorized');
    check(message.includes('unauthorized'), `expected the unauthorized error, got: ${message}`);
  });

  await step('admin logs in', async () => {
    await page.fill('#login-password', password);
    await page.click('#login-submit');
    await page.waitForSelector('#deploy-form');
    check((await text('#user')).includes('admin'), 'the header should name the user');
    const token = await page.evaluate(() => sessionStorage.getItem('maas.console.token'));
    check(token && token.length > 20, 'the token should be kept in sessionStorage');
  });

  await step('iris is deployed from the file through the form', async () => {
    await page.fill('#deploy-name', 'iris');
    await page.setInputFiles('#deploy-file', modelPath);
    await page.fill('#deploy-class-names', '["setosa","versicolor","virginica"]');
    await page.click('#deploy-form details summary');
    await page.setInputFiles('#deploy-training', trainingPath);
    await page.fill('#deploy-label-column', 'species');
    await page.fill('#deploy-feature-names', '["sepal_length","sepal_width","petal_length","petal_width"]');
    await page.uncheck('#deploy-append');
    await page.click('#deploy-submit');
    const result = await waitForText('#deploy-result', 'Deployed iris version 1', { failOn: '.alert-error' });
    check(result.includes('Deployed iris version 1'), `the deploy failed: ${result}`);
    const row = page.locator('#models-table tbody tr', { hasText: 'iris' });
    await row.waitFor();
    check((await row.locator('.badge').innerText()).trim() === 'running', 'iris should be listed as running');
  });

  await step('a second version is deployed beside the first', async () => {
    await page.setInputFiles('#deploy-file', secondModelPath);
    await page.check('#deploy-append');
    await page.fill('#deploy-label-column', '');
    await page.fill('#deploy-feature-names', '');
    await page.setInputFiles('#deploy-training', []);
    await page.click('#deploy-submit');
    const result = await waitForText('#deploy-result', 'Deployed iris version 2', { failOn: '.alert-error' });
    check(result.includes('now the default'), `version 2 should become the default: ${result}`);
    await page.waitForSelector('#models-table .chip-default:text-is("v2")');
    await shot('models');
  });

  await step('the model page shows the version and its metadata', async () => {
    await page.click('#models-table a:text-is("iris")');
    await page.waitForSelector('#versions-table');
    check((await text('#model-state')).trim() === 'running', 'the state badge should say running');
    const versions = await text('#versions-table');
    check(versions.includes('v1') && versions.includes('deployed') && versions.includes('float_input'), `the versions table lacks v1/deployed/float_input: ${versions}`);
    check(versions.includes('setosa'), 'the versions table should show the class names');
  });

  await step('a predict answers setosa, from the default version 2', async () => {
    const answer = await predict(undefined, 'setosa');
    check(answer.includes('"version": 2'), 'the answer should name version 2');
  });

  await step('roll back to version 1', async () => {
    page.once('dialog', (dialog) => dialog.accept());
    await page.click('#versions-table [data-rollback="1"]');
    const message = await waitForText('#action-result', 'serves version 1 only', { failOn: '.alert-error' });
    check(message.includes('serves version 1 only'), `the rollback failed: ${message}`);
    await page.waitForFunction(() => document.querySelector('#versions-table')?.innerText.includes('undeployed'));
    const answer = await predict(undefined, 'setosa');
    check(answer.includes('"version": 1'), 'after the rollback the answer should come from version 1');
  });

  await step('predicts with a shifted petal length record drift events', async () => {
    if (!existsSync(shiftedPath)) {
      console.log(`NOTICE: ${shiftedPath} is missing; the drift page will be empty`);
      return;
    }
    const shifted = JSON.parse(readFileSync(shiftedPath, 'utf8'));
    // Each detector flags the shift at other rows (HDDM also warns), so the chart has some shape.
    for (const detector of ['adwin', 'hddm_a', 'page_hinkley', 'hddm_w']) {
      const answer = await predict(JSON.stringify({ ...shifted, drift: { detector } }), '"drift"');
      check(answer.includes('petal_length'), `the ${detector} drift report should name petal_length`);
      await page.waitForTimeout(600);
    }
    await page.fill('#predict-input', '{"instances": [[5.1, 3.5, 1.4, 0.2]]}');
  });

  await step('pause: the state badge says paused and a predict answers model_paused', async () => {
    await clickAction('pause', 'paused');
    await predict(undefined, 'model_paused');
    check((await text('#predict-output')).includes('503'), 'the refused predict should show HTTP 503');
  });

  await step('resume: running again and predicts answer', async () => {
    await clickAction('resume', 'running');
    await predict(undefined, 'setosa');
    await page.waitForFunction(() => !document.querySelector('#predictions-output')?.innerText.includes('Loading'));
    await shot('model');
  });

  await step('the audit page lists the changes', async () => {
    await page.click('#nav-audit');
    await page.waitForSelector('#audit-table, #audit-unavailable, #audit-card .empty');
    if (await page.locator('#audit-unavailable').count()) {
      check((await text('#audit-unavailable')).includes('not available'), 'the unavailable notice should say so');
      console.log('NOTICE: this server has no audit route (404 route_not_found); checked the "not available" message instead');
    } else {
      check((await page.locator('#audit-table tbody tr').count()) > 0, `the audit trail should list entries: ${await text('#content')}`);
      const entries = await text('#audit-table');
      check(entries.includes('iris'), 'the audit trail should mention iris');
      check(entries.includes('admin'), 'the audit trail should name admin as the actor');
      await page.fill('#audit-model', 'iris');
      // The old table goes first, so the wait below sees the filtered one.
      await page.evaluate(() => document.querySelector('#audit-table').remove());
      await page.click('#audit-filters button[type="submit"]');
      await page.waitForFunction(() => location.hash.includes('model=iris') && document.querySelector('#audit-table, #audit-card .empty'));
      check((await page.locator('#audit-table tbody tr').count()) > 0, 'filtering on model iris should keep entries');
    }
    await shot('audit');
  });

  await step('the drift page draws a chart per feature', async () => {
    await page.click('#nav-drift');
    await page.waitForSelector('#drift-charts, #drift-empty');
    if (existsSync(shiftedPath)) {
      check((await page.locator('#drift-charts svg.chart').count()) >= 1, 'a drift chart should be drawn');
      check((await text('#drift-charts')).includes('petal_length'), 'the petal_length chart should be there');
      check((await page.locator('#drift-table tbody tr').count()) >= 4, 'the drift table should list the events');
      // Each feature's baseline against the rows scored: the 4 shifted requests of 150 rows.
      await page.waitForSelector('#drift-distributions');
      const features = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'];
      check((await page.locator('#drift-histograms svg.histogram').count()) === features.length, 'one histogram per feature');
      for (const feature of features) {
        const chart = page.locator(`#drift-histograms svg.histogram[data-feature="${feature}"]`);
        check(await chart.isVisible(), `the ${feature} histogram should be visible`);
        check((await chart.locator('rect.side-baseline').count()) > 0, `the ${feature} histogram should draw baseline bars`);
        check((await chart.locator('rect.side-recent').count()) > 0, `the ${feature} histogram should draw recent bars`);
        check((await chart.locator('g.quantiles').count()) === 2, `the ${feature} chart should draw both quantile boxes`);
      }
      const legendText = await text('#drift-distributions .legend');
      // Drift is on by default with a baseline: every predict of the version counts, at least the
      // 600 shifted rows.
      const recent = Number((/recent \((\d+) rows\)/.exec(legendText) || [])[1]);
      check(legendText.includes('baseline (50 rows)') && recent >= 600, `the legend should name both sides and their rows: ${legendText}`);
    }
    await shot('drift');
  });

  await step('a job page follows the running task\'s log, then shows attempts, results and artifacts', async () => {
    const token = await page.evaluate(() => sessionStorage.getItem('maas.console.token'));
    const workflow = [
      'name: console-demo',
      'tasks:',
      '  - name: prepare',
      '    kind: script',
      '    script: echo preparing',
      '  - name: train',
      '    kind: script',
      '    depends_on: [prepare]',
      '    script: |',
      '      for i in 1 2 3 4 5 6; do echo "epoch $i"; sleep 0.5; done',
      '      echo \'{"accuracy": 0.93, "loss": {"train": 0.12, "test": 0.2}}\' > "$MAAS_METRICS"',
      '      mkdir -p "$MAAS_ARTIFACTS" && echo "iris model card" > "$MAAS_ARTIFACTS/model-card.txt"',
      '',
    ].join('\n');
    const submitted = await page.request.post(`${base}/v1/jobs`, {
      headers: { Authorization: `Bearer ${token}` },
      data: { workflow },
    });
    check(submitted.status() === 202, `submitting a job answered ${submitted.status()}`);
    const job = await submitted.json();
    await page.evaluate((id) => {
      location.hash = `#/jobs/${id}`;
    }, job.id);
    await page.waitForSelector('#tasks-table');
    // While train runs, its log grows on the page: seen mid-way, still being followed.
    await page.waitForFunction(() => {
      const log = document.querySelector('#task-log')?.textContent || '';
      return log.includes('epoch 1') && document.querySelector('#log-status')?.textContent.includes('following');
    }, null, { timeout: 20000 });
    check((await text('#job-state')).trim() === 'running', 'the job should be running while its log is followed');
    await page.waitForFunction(() => document.querySelector('#log-status')?.dataset.complete === 'true' && document.querySelector('#task-log')?.textContent.includes('epoch 6'), null, { timeout: 20000 });
    const log = await page.locator('#task-log').textContent();
    check(log === ['1', '2', '3', '4', '5', '6'].map((i) => `epoch ${i}\n`).join(''), `the followed log should hold each line once: ${JSON.stringify(log)}`);
    await page.waitForFunction(() => document.querySelector('#job-state')?.textContent.trim() === 'finished');
    const tasks = await text('#tasks-table');
    check(tasks.includes('prepare') && tasks.includes('train') && tasks.includes('1 of'), `the tasks table should list both tasks and their attempts: ${tasks}`);
    check(tasks.includes('exit 0'), `each attempt should say how it exited: ${tasks}`);
    check((await page.locator('#job-duration').innerText()).trim() !== '—', 'the job header should show its duration');
    // Results: metrics as a table, the artifact as a download carrying the bearer.
    await page.waitForSelector('#job-results [data-artifact="model-card.txt"]');
    const results = await text('#job-results');
    for (const want of ['accuracy', '0.93', 'loss.train', '0.12', 'model-card.txt']) check(results.includes(want), `the results should show ${want}: ${results}`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#job-results [data-artifact="model-card.txt"]')]);
    check(download.suggestedFilename() === 'model-card.txt', `the download should be named model-card.txt, not ${download.suggestedFilename()}`);
    const body = readFileSync(await download.path(), 'utf8');
    check(body === 'iris model card\n', `the downloaded artifact should hold what the task wrote: ${JSON.stringify(body)}`);
    // The other task's log, picked from the table.
    await page.click('#tasks-table tr[data-task="prepare"]');
    await page.waitForFunction(() => document.querySelector('#task-log')?.textContent === 'preparing\n' && document.querySelector('#log-status')?.dataset.complete === 'true');
    await page.click('#tasks-table tr[data-task="train"]');
    await page.waitForFunction(() => document.querySelector('#task-log')?.textContent.includes('epoch 6') && document.querySelector('#log-status')?.dataset.complete === 'true');
    await shot('job');
  });

  await step('the jobs page lists jobs with their states and durations', async () => {
    await page.click('#nav-jobs');
    await page.waitForSelector('#jobs-table');
    check((await text('#jobs-table')).includes('console-demo'), 'the job should be listed');
    check((await text('#jobs-table')).includes('finished'), 'its state should show');
    check((await text('#jobs-summary')).includes('100%'), 'the success ratio should show');
    check((await page.locator('svg.chart').count()) >= 1, 'the duration chart should be drawn');
    check((await page.locator('#jobs-table a[href^="#/jobs/"]').count()) >= 1, 'each job should link its page');
    await shot('jobs');
  });

  await step('the header links Swagger UI, metrics and the API document', async () => {
    for (const [id, href] of [['#link-swagger', '/docs/'], ['#link-metrics', '/metrics'], ['#link-openapi', '/openapi.json']]) {
      check((await page.getAttribute(id, 'href')) === href, `${id} should link ${href}`);
    }
    const docs = await page.request.get(`${base}/docs/`);
    check(docs.ok(), `/docs/ answered ${docs.status()}`);
  });

  await step('log out, and a bad token leads back to the login form', async () => {
    await page.click('#logout');
    await page.waitForSelector('#login-form');
    check((await page.evaluate(() => sessionStorage.getItem('maas.console.token'))) === null, 'logging out should forget the token');
    await page.evaluate(() => {
      sessionStorage.setItem('maas.console.token', 'not-a-valid-token');
      location.hash = '#/models/iris';
    });
    const message = await waitForText('#login-message', 'log in again');
    check(message.includes('log in again'), 'a 401 should explain why the login form is back');
  });

  noProblems();
  console.log(`console e2e: ${passed} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${shots}`);
  await browser.close();
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  if (problems.length) console.error(`also: ${problems.join('; ')}`);
  try {
    await page.screenshot({ path: join(shots, 'console-failure.png'), fullPage: true });
    console.error(`the page at that moment: ${join(shots, 'console-failure.png')}`);
  } catch (_) {
    // The browser itself is gone; nothing more to show.
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
