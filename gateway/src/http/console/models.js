// The maas console: the models list, the deploy form and one model's page.
// A classic script loaded after app.js (see index.html); it shares app.js's helpers.
'use strict';

function versionChips(model) {
  if (!model.versions.length) return h('span', { class: 'muted' }, 'none yet');
  return h(
    'span',
    { class: 'chips' },
    model.versions.map((v) =>
      h(
        'span',
        { class: ['chip', `chip-${v.state}`, v.version === model.default_version && 'chip-default'], title: `version ${v.version}: ${v.state}${v.version === model.default_version ? ', default' : ''}, created ${formatTime(v.created_at)}` },
        `v${v.version}`,
      ),
    ),
  );
}

async function modelsPage(content) {
  setCrumbs([['Models']]);
  const list = h('div');
  const load = () =>
    fill(list, async () => {
      const { models } = await get('/v1/models');
      datalist.replaceChildren(...models.map((m) => h('option', { value: m.name })));
      return table(
        [
          { title: 'Model', cell: (m) => h('a', { class: 'strong-link', href: `#/models/${enc(m.name)}` }, m.name) },
          { title: 'State', cell: (m) => badge(m.state) },
          { title: 'Default version', cell: (m) => (m.default_version ? `v${m.default_version}` : h('span', { class: 'muted' }, '—')) },
          { title: 'Versions', cell: versionChips },
          { title: 'Updated', class: 'nowrap muted', cell: (m) => formatTime(m.updated_at) },
          { title: '', class: 'right', cell: (m) => h('a', { class: 'btn btn-ghost btn-sm', href: `#/drift?model=${enc(m.name)}` }, 'Drift') },
        ],
        models,
        { id: 'models-table', empty: emptyState('No models yet', 'Deploy the first one with the form below: an ONNX file is all it takes.') },
      );
    });
  const datalist = h('datalist', { id: 'model-names' });
  content.append(
    pageHead('Models', 'Every model this server keeps, its versions and the state of its service.', button('Refresh', load, { id: 'models-refresh' })),
    card('Models', {}, list),
    deployCard(load),
    datalist,
  );
  await load();
}

function deployCard(onDeployed) {
  const name = h('input', { id: 'deploy-name', name: 'name', required: true, placeholder: 'iris', list: 'model-names', autocomplete: 'off', pattern: '[A-Za-z0-9][A-Za-z0-9._-]*' });
  const file = h('input', { id: 'deploy-file', name: 'model', type: 'file', accept: '.onnx', required: true });
  const classNames = h('input', { id: 'deploy-class-names', name: 'class_names', placeholder: '["setosa", "versicolor", "virginica"]', autocomplete: 'off', spellcheck: 'false' });
  // Not named `append`: a form's named controls shadow its methods (form.append).
  const appendBox = h('input', { id: 'deploy-append', name: 'keep-deployed', type: 'checkbox' });
  const training = h('input', { id: 'deploy-training', name: 'training_data', type: 'file', accept: '.csv,text/csv' });
  const label = h('input', { id: 'deploy-label-column', name: 'label_column', placeholder: 'species', autocomplete: 'off' });
  const features = h('input', { id: 'deploy-feature-names', name: 'feature_names', placeholder: '["sepal_length", "sepal_width", "petal_length", "petal_width"]', autocomplete: 'off', spellcheck: 'false' });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'deploy-submit' }, 'Deploy');
  const result = h('div', { id: 'deploy-result', class: 'form-result' });

  const jsonList = (input, what) => {
    const text = input.value.trim();
    if (!text) return null;
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ApiFailure(0, 'invalid_json', `${what} must be a JSON list of strings: ${e.message}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((s) => typeof s === 'string')) {
      throw new ApiFailure(0, 'invalid_argument', `${what} must be a JSON list of strings, like ["a", "b"]`);
    }
    return text;
  };

  const form = h(
    'form',
    {
      id: 'deploy-form',
      class: 'form',
      onsubmit: async (event) => {
        event.preventDefault();
        await busy(submit, 'Deploying…', async () => {
          try {
            const model = name.value.trim();
            if (!file.files.length) throw new ApiFailure(0, 'invalid_argument', 'choose the .onnx file to upload');
            const body = new FormData();
            body.append('model', file.files[0], file.files[0].name);
            const classes = jsonList(classNames, 'class names');
            if (classes) body.append('class_names', classes);
            const featureList = jsonList(features, 'feature names');
            if (featureList) body.append('feature_names', featureList);
            if (training.files.length) body.append('training_data', training.files[0], training.files[0].name);
            if (label.value.trim()) body.append('label_column', label.value.trim());
            if (appendBox.checked) body.append('append', 'true');
            const v = await api('POST', `/v1/models/${enc(model)}/versions`, { form: body });
            result.replaceChildren(
              okBox(
                h('strong', {}, `Deployed ${v.name} version ${v.version}`),
                ` on ${v.backend}${v.default ? ', now the default' : ''}${v.ready ? '' : ' (loading)'}. `,
                h('a', { href: `#/models/${enc(v.name)}`, id: 'deploy-open' }, `Open ${v.name} →`),
              ),
            );
            file.value = '';
            training.value = '';
            await onDeployed();
          } catch (e) {
            result.replaceChildren(...[errorBox(e)].filter(Boolean));
          }
        });
      },
    },
    h(
      'div',
      { class: 'form-grid' },
      field('Model name', name, 'Letters, digits, ".", "_" and "-". A new name creates the model.'),
      field('ONNX file', file, 'The version is loaded and test-run before it is recorded.'),
      h('div', { class: 'span-2' }, field('Class names (optional)', classNames, 'A JSON list: label i of a classifier is shown as the i-th name.')),
    ),
    h(
      'details',
      { class: 'form-more' },
      h('summary', {}, 'Drift baseline (optional)'),
      h(
        'div',
        { class: 'form-grid' },
        field('Training data (CSV)', training, 'A sample of its rows becomes the drift baseline.'),
        field('Label column', label, 'The CSV column that is not a feature.'),
        h('div', { class: 'span-2' }, field('Feature names', features, 'A JSON list naming the model\u2019s input columns.')),
      ),
    ),
    h(
      'div',
      { class: 'form-foot' },
      h('label', { class: 'check' }, appendBox, h('span', {}, 'Append: keep the deployed versions serving beside this one (by default it replaces them; they stay kept)')),
      submit,
    ),
    result,
  );
  return card('Deploy a version', { id: 'deploy-card', subtitle: 'Upload an ONNX file as the next version of a model.' }, form);
}

// ---------------------------------------------------------------------------------------------
// One model

const STATE_HELP = {
  created: 'The model exists but no version was ever deployed: upload one on the Models page.',
  running: 'A version is deployed and answering predicts.',
  paused: 'Every predict answers 503 model_paused; the versions stay loaded.',
  finished: 'Every version is undeployed and the history is kept. Deploy a version to serve again.',
};

const ACTION_STYLE = {
  deploy: ['Deploy', 'primary'],
  update: ['Update…', 'secondary'],
  pause: ['Pause', 'warn'],
  resume: ['Resume', 'primary'],
  finish: ['Finish', 'danger'],
};

const ACTION_DONE = {
  pause: (name) => `${name} is paused: predicts answer 503 model_paused until it is resumed.`,
  resume: (name) => `${name} answers predicts again.`,
  finish: (name) => `${name} is finished: every version is undeployed, the history is kept.`,
};

async function modelPage(content, name) {
  setCrumbs([['Models', '#/models'], [name]]);
  const head = h('div');
  const feedback = h('div', { id: 'action-result' });
  const service = h('div');
  const versions = h('div');
  const stored = storedPredictionsPanel(name);
  const predict = predictPanel(name, () => stored.reload());
  content.append(
    head,
    feedback,
    card('Service', { id: 'service-card', subtitle: 'The model\u2019s state and the actions it allows now.' }, service),
    card('Versions', { id: 'versions-card', subtitle: 'Every version kept for this model, newest first.' }, versions),
    h('div', { class: 'grid-2' }, predict.element, stored.element),
  );

  /** Run one change, say how it went, and show the model as it is now. */
  const act = async (btn, label, work, done) => {
    await busy(btn, label, async () => {
      try {
        await work();
        feedback.replaceChildren(okBox(done));
      } catch (e) {
        feedback.replaceChildren(...[errorBox(e)].filter(Boolean));
      }
      await refresh().catch((e) => feedback.append(...[errorBox(e)].filter(Boolean)));
    });
  };

  async function refresh() {
    const [list, info] = await Promise.all([get(`/v1/models/${enc(name)}/versions`), get(`/v1/models/${enc(name)}/actions`)]);
    const deployed = list.versions.filter((v) => v.state === 'deployed');
    head.replaceChildren(
      pageHead(
        h('span', { class: 'title-with-badge' }, h('span', { id: 'model-name' }, name), badge(info.state, 'model-state')),
        list.default_version ? `Predicts without a version go to version ${list.default_version}.` : 'No version answers predicts now.',
        h('a', { class: 'btn btn-secondary', href: `#/drift?model=${enc(name)}` }, 'Drift'),
        button('Refresh', (ev) => busy(ev.currentTarget, 'Refreshing…', refresh), { id: 'model-refresh' }),
      ),
    );
    service.replaceChildren(serviceControls(name, info, list, act));
    versions.replaceChildren(versionsTable(name, list, deployed, act));
    predict.setVersions(list);
    stored.setVersions(list);
  }
  await refresh();
}

function serviceControls(name, info, list, act) {
  const buttons = [];
  const extra = h('div', { class: 'service-extra' });
  for (const action of info.actions) {
    const [label, kind] = ACTION_STYLE[action] || [action, 'secondary'];
    if (action === 'deploy') {
      const choice = h(
        'select',
        { id: 'action-deploy-version', 'aria-label': 'version to deploy' },
        [...list.versions].reverse().map((v) => h('option', { value: v.version }, `v${v.version} (${v.state})`)),
      );
      const b = button(label, () => act(b, 'Deploying…', () => post(`/v1/models/${enc(name)}/actions/deploy`, { version: Number(choice.value) }), `Deployed version ${choice.value} of ${name}.`), { kind, data: { action } });
      buttons.push(h('span', { class: 'inline-group' }, choice, b));
    } else if (action === 'update') {
      const b = button(label, () => {
        if (extra.firstChild) {
          extra.replaceChildren();
          return;
        }
        const text = h('textarea', { class: 'code', rows: 7, spellcheck: 'false', id: 'update-body' });
        const current = (list.versions.find((v) => v.default) || list.versions.find((v) => v.serving) || {}).serving;
        text.value = prettyJson({ serving: { instances: current ? current.instances : 1, max_batch_size: current ? current.max_batch_size : 32 } });
        const apply = button('Apply update', () => {
          let body;
          try {
            body = JSON.parse(text.value);
          } catch (e) {
            extra.append(errorBox(new ApiFailure(0, 'invalid_json', e.message)));
            return;
          }
          act(apply, 'Updating…', () => post(`/v1/models/${enc(name)}/actions/update`, body), `Updated the service of ${name}.`);
        }, { kind: 'primary', id: 'update-apply' });
        extra.replaceChildren(field('Serving options and drift settings (JSON)', text, 'Fields not given keep their value; each deployed version is reloaded without a gap.'), apply);
      }, { kind, data: { action } });
      buttons.push(b);
    } else {
      const b = button(label, () => {
        if (action === 'finish' && !window.confirm(`Finish ${name}? Every version is undeployed; the history is kept.`)) return;
        act(b, `${label}…`, () => post(`/v1/models/${enc(name)}/actions/${action}`), ACTION_DONE[action] ? ACTION_DONE[action](name) : `${label}: done.`);
      }, { kind, data: { action }, id: `action-${action}` });
      buttons.push(b);
    }
  }
  return h(
    'div',
    { class: 'service' },
    h(
      'div',
      { class: 'service-row' },
      h('div', { class: 'service-state' }, badge(info.state), h('span', { class: 'service-help' }, STATE_HELP[info.state] || '')),
      buttons.length ? h('div', { class: 'button-row', id: 'service-actions' }, buttons) : h('span', { class: 'muted' }, 'No action is allowed in this state.'),
    ),
    extra,
  );
}

function tensorList(tensors) {
  return h('div', { class: 'tensors' }, tensors.map((t) => h('div', {}, h('code', {}, t.name), ' ', h('span', { class: 'muted' }, `${t.element_type} ${shapeText(t.shape)}`))));
}

function versionsTable(name, list, deployed, act) {
  const onlyDeployed = (v) => deployed.length === 1 && deployed[0].version === v.version;
  return table(
    [
      {
        title: 'Version',
        cell: (v) => h('span', { class: 'version-cell', title: `sha256 ${v.sha256}\n${formatBytes(v.size_bytes)} from ${v.source}` }, h('strong', {}, `v${v.version}`), v.default ? h('span', { class: 'tag tag-default' }, 'default') : null),
      },
      {
        title: 'State',
        cell: (v) => [badge(v.state), v.load_error ? h('div', { class: 'error-text' }, v.load_error) : null],
      },
      {
        title: 'Serving',
        cell: (v) =>
          v.serving
            ? h('div', {}, h('div', {}, h('strong', {}, v.serving.backend), ' ', h('span', { class: v.ready ? 'dot dot-ok' : 'dot dot-wait', title: v.ready ? 'ready' : 'warming up' })), h('div', { class: 'muted small nowrap' }, `${v.serving.instances} instance${v.serving.instances === 1 ? '' : 's'} · ${v.serving.batching ? `batches ≤ ${v.serving.max_batch_size}` : 'no batching'}`))
            : h('div', {}, h('span', {}, v.backend), h('div', { class: 'muted small' }, 'not loaded')),
      },
      { title: 'Inputs', cell: (v) => tensorList(v.inputs) },
      { title: 'Outputs', cell: (v) => [tensorList(v.outputs), v.class_names ? h('div', { class: 'muted small' }, `classes: ${v.class_names.join(', ')}`) : null] },
      { title: 'Created', class: 'nowrap muted', cell: (v) => formatTime(v.created_at) },
      {
        title: '',
        class: 'right nowrap',
        cell: (v) => {
          const out = [];
          if (!onlyDeployed(v)) {
            const b = button('Roll back', () => {
              if (!window.confirm(`Serve only version ${v.version} of ${name}? The other versions are undeployed.`)) return;
              act(b, 'Rolling back…', () => post(`/v1/models/${enc(name)}/versions/${v.version}/deploy`, { append: false }), `${name} now serves version ${v.version} only.`);
            }, { kind: 'secondary', title: 'Deploy this version alone', data: { rollback: v.version } });
            b.classList.add('btn-sm');
            out.push(b);
          }
          if (v.state === 'deployed') {
            const b = button('Undeploy', () => {
              if (!window.confirm(`Undeploy version ${v.version} of ${name}?`)) return;
              act(b, 'Undeploying…', () => post(`/v1/models/${enc(name)}/versions/${v.version}/undeploy`), `Undeployed version ${v.version} of ${name}.`);
            }, { kind: 'danger-ghost', data: { undeploy: v.version } });
            b.classList.add('btn-sm');
            out.push(b);
          }
          return h('span', { class: 'row-actions' }, out);
        },
      },
    ],
    [...list.versions].sort((a, b) => b.version - a.version),
    { id: 'versions-table', empty: emptyState('No versions', 'Deploy one from the Models page.') },
  );
}

function versionOptions(list, select, { withDefault }) {
  const previous = select.value;
  const options = [];
  if (withDefault) options.push(h('option', { value: '' }, list.default_version ? `default (v${list.default_version})` : 'default'));
  for (const v of [...list.versions].sort((a, b) => b.version - a.version)) {
    options.push(h('option', { value: String(v.version) }, `v${v.version} · ${v.state}`));
  }
  select.replaceChildren(...options);
  // Keep what the operator picked; otherwise follow the default version as it changes.
  const keep = withDefault || select.dataset.picked === 'yes';
  if (keep && [...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (!withDefault && list.default_version) select.value = String(list.default_version);
}

function predictPanel(name, onAnswer) {
  const version = h('select', { id: 'predict-version', 'aria-label': 'version' });
  const input = h('textarea', { id: 'predict-input', class: 'code', rows: 5, spellcheck: 'false' });
  input.value = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}';
  const output = h('div', { id: 'predict-output', class: 'result' }, h('p', { class: 'muted' }, 'The answer appears here. Ctrl+Enter runs it.'));
  const run = async () => {
    const path = version.value ? `/v1/models/${enc(name)}/versions/${enc(version.value)}/predict` : `/v1/models/${enc(name)}/predict`;
    await busy(go, 'Predicting…', async () => {
      const started = performance.now();
      try {
        const response = await request('POST', path, { body: input.value });
        const ms = performance.now() - started;
        if (!response.ok) {
          output.replaceChildren(errorBox(await readFailure(response)));
          return;
        }
        const answer = await response.json();
        const predictions = Array.isArray(answer.predictions) ? answer.predictions : [];
        output.replaceChildren(
          h(
            'div',
            { class: 'result-meta' },
            badge('ok'),
            h('span', {}, `version ${answer.version}`),
            h('span', { class: 'muted' }, `${predictions.length} row${predictions.length === 1 ? '' : 's'} · ${ms.toFixed(0)} ms`),
          ),
          predictions.length && predictions.length <= 12 ? h('div', { class: 'chips predictions' }, predictions.map((p) => h('span', { class: 'chip chip-prediction' }, typeof p === 'string' ? p : JSON.stringify(p)))) : null,
          h('pre', { class: 'json' }, prettyJson(answer)),
        );
        onAnswer();
      } catch (e) {
        output.replaceChildren(...[errorBox(e)].filter(Boolean));
      }
    });
  };
  const go = button('Predict', run, { kind: 'primary', id: 'predict-run' });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  const element = card(
    'Predict',
    { id: 'predict-card', subtitle: 'POST a JSON body to the model, as a client would.' },
    h('div', { class: 'inline-form' }, field('Version', version), h('div', { class: 'grow' })),
    field('Request body', input, '"instances" (rows), or "records" with feature names; add "drift": {"detector": "adwin"} to check it.'),
    h('div', { class: 'button-row' }, go),
    output,
  );
  return { element, setVersions: (list) => versionOptions(list, version, { withDefault: true }) };
}

function storedPredictionsPanel(name) {
  const version = h('select', { id: 'predictions-version', 'aria-label': 'version' });
  const output = h('div', { id: 'predictions-output' });
  const load = () =>
    fill(output, async () => {
      if (!version.value) return emptyState('No versions', 'Nothing has been deployed yet.');
      let answer;
      try {
        answer = await get(`/v1/models/${enc(name)}/versions/${enc(version.value)}/predictions?limit=20`);
      } catch (e) {
        if (isMissingRoute(e)) return infoBox('Prediction log not available on this server.');
        throw e;
      }
      const rows = answer.predictions || [];
      if (!rows.length) return emptyState('No stored predictions', `Predictions of v${version.value} are listed here once the prediction log records them.`);
      return [
        h('p', { class: 'muted small' }, `${rows.length} most recent of ${answer.total ?? rows.length} stored for v${version.value}.`),
        table(
          [
            { title: 'At', class: 'nowrap', cell: (p) => formatTime(p.at) },
            { title: 'Actor', cell: (p) => p.actor || '—' },
            { title: 'Inputs', cell: (p) => h('code', { class: 'clip', title: JSON.stringify(p.inputs) }, compactJson(p.inputs, 48)) },
            { title: 'Outputs', cell: (p) => h('code', { class: 'clip', title: JSON.stringify(p.outputs) }, compactJson(p.outputs, 48)) },
            { title: 'Latency', class: 'right nowrap', cell: (p) => (Number.isFinite(p.latency_ms) ? `${p.latency_ms.toFixed(1)} ms` : '—') },
            { title: 'Drift', cell: (p) => (p.drift ? badge('drift') : h('span', { class: 'muted' }, '—')) },
          ],
          rows,
          { id: 'predictions-table' },
        ),
      ];
    });
  version.addEventListener('change', () => {
    version.dataset.picked = 'yes';
    load();
  });
  const element = card(
    'Stored predictions',
    { id: 'predictions-card', subtitle: 'The latest predictions recorded for a version.', actions: button('Reload', load, { kind: 'ghost' }) },
    h('div', { class: 'inline-form' }, field('Version', version)),
    output,
  );
  let loaded = false;
  return {
    element,
    reload: () => loaded && load(),
    setVersions: (list) => {
      const before = version.value;
      versionOptions(list, version, { withDefault: false });
      if (!loaded || version.value !== before) {
        loaded = true;
        load();
      }
    },
  };
}
