// End-to-end test of Swagger UI at /docs in headless Chromium, driven by playwright-core: what a
// new user does with the API document alone. Authorize with a token, deploy iris with the
// multipart form (choosing only the model file, every other field left empty), then run predict
// with the example Swagger UI pre-fills, as it is.
//
//   MAAS_E2E_TOKEN=... MAAS_E2E_MODEL=tests/fixtures/iris_logreg.onnx \
//     node docs.mjs http://127.0.0.1:8080 ../../target/console-screenshots
//
// Env: CHROMIUM (default /usr/bin/chromium). Any failed check exits 1 with what went wrong and a
// screenshot (docs-failure.png).

import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, shotsArg] = process.argv.slice(2);
if (!baseArg || !shotsArg) {
  console.error('usage: node docs.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const shots = resolve(shotsArg);
const token = process.env.MAAS_E2E_TOKEN;
const modelPath = process.env.MAAS_E2E_MODEL && resolve(process.env.MAAS_E2E_MODEL);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!token || !modelPath || !existsSync(modelPath) || !existsSync(executablePath)) {
  console.error('FAIL: set MAAS_E2E_TOKEN and MAAS_E2E_MODEL (an existing iris_logreg.onnx), and install chromium');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const check = (ok, message) => {
  if (!ok) throw new Error(message);
};

// The operation's block, opened, in "Try it out" mode.
async function open(page, method, path) {
  const block = page.locator(`.opblock-${method}`).filter({
    has: page.locator('.opblock-summary-path', { hasText: new RegExp(`^${path.replace(/[{}/]/g, '\\$&')}$`) }),
  });
  await block.first().locator('.opblock-summary').first().click();
  await block.first().locator('button.try-out__btn').click();
  return block.first();
}

// Execute and return the status code and body Swagger UI shows.
async function execute(block) {
  await block.locator('button.execute').click();
  const status = block.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 20000 });
  const code = (await status.innerText()).trim();
  const body = await block.locator('.live-responses-table .response-col_description .microlight').first().innerText();
  return { code, body };
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
try {
  await page.goto(`${base}/docs`);
  await page.locator('.swagger-ui .information-container').waitFor({ timeout: 20000 });

  // Authorize once for every operation.
  await page.locator('button.authorize').first().click();
  await page.locator('.auth-container input[type=text], .auth-container input:not([type])').first().fill(token);
  await page.locator('.auth-btn-wrapper button.authorize').click();
  await page.locator('.auth-btn-wrapper button.btn-done, .auth-btn-wrapper button.close-modal').first().click();

  // Deploy: the model field is a file picker; the other fields stay empty.
  const deploy = await open(page, 'post', '/v1/models/{name}/versions');
  const name = deploy.locator('tr[data-param-name="name"] input');
  if ((await name.inputValue()) !== 'iris') await name.fill('iris');
  const picker = deploy.locator('tr[data-property-name="model"] input[type=file]');
  check((await picker.count()) === 1, 'the deploy form has no file picker for `model`');
  await picker.setInputFiles(modelPath);
  const deployed = await execute(deploy);
  await page.screenshot({ path: join(shots, 'docs-deploy.png'), fullPage: false });
  check(deployed.code === '201', `deploy from /docs answered ${deployed.code}: ${deployed.body}`);
  check(JSON.parse(deployed.body).version === 1, `deploy answered ${deployed.body}`);

  // Predict with the pre-filled example, sent as it is.
  const predict = await open(page, 'post', '/v1/models/{name}/predict');
  const predictName = predict.locator('tr[data-param-name="name"] input');
  if ((await predictName.inputValue()) !== 'iris') await predictName.fill('iris');
  const predicted = await execute(predict);
  await predict.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'docs-predict.png'), fullPage: false });
  check(predicted.code === '200', `predict's example answered ${predicted.code}: ${predicted.body}`);
  check(Array.isArray(JSON.parse(predicted.body).predictions), `predict answered ${predicted.body}`);
  console.log('docs: deploy and predict from Swagger UI passed');
} catch (e) {
  await page.screenshot({ path: join(shots, 'docs-failure.png'), fullPage: true }).catch(() => {});
  console.error(`FAIL: ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
