// The maas console: the drift page (events over time, and each feature's distribution).
// A classic script loaded after app.js (see index.html); it shares app.js's helpers.
'use strict';

const KINDS = [
  ['drift', 'kind-drift', 'drift (detector fired)'],
  ['warning', 'kind-warning', 'warning'],
  ['deviation', 'kind-deviation', 'deviation (mean shift; no rows)'],
];

async function driftPage(content, query) {
  setCrumbs([['Drift']]);
  const { models } = await get('/v1/models');
  content.append(pageHead('Drift', 'Where the data scored drifted from what the model learned from, per feature.'));
  if (!models.length) {
    content.append(card('Drift', {}, emptyState('No models yet', 'Deploy a model with training data to watch its inputs for drift.')));
    return;
  }
  const name = models.some((m) => m.name === query.get('model')) ? query.get('model') : models[0].name;
  const model = models.find((m) => m.name === name);
  const versionFilter = query.get('version') || '';
  const go = (params) => {
    location.hash = `#/drift?${new URLSearchParams(params)}`;
  };
  const modelSelect = h('select', { id: 'drift-model', onchange: () => go({ model: modelSelect.value }) }, models.map((m) => h('option', { value: m.name, selected: m.name === name }, m.name)));
  const versionSelect = h(
    'select',
    { id: 'drift-version', onchange: () => go(versionSelect.value ? { model: name, version: versionSelect.value } : { model: name }) },
    h('option', { value: '' }, 'all versions'),
    [...model.versions].reverse().map((v) => h('option', { value: v.version, selected: String(v.version) === versionFilter }, `v${v.version}`)),
  );
  const body = h('div');
  const distributions = h('div');
  content.append(
    card('Model', {}, h('div', { class: 'inline-form' }, field('Model', modelSelect), field('Version', versionSelect), h('div', { class: 'grow' }), h('a', { class: 'btn btn-ghost', href: `#/models/${enc(name)}` }, `Open ${name} →`), button('Refresh', render, { id: 'drift-refresh' }))),
    distributions,
    body,
  );
  // The distributions are per version: the one picked, else the default (else the newest).
  const newest = model.versions.length ? Math.max(...model.versions.map((v) => v.version)) : null;
  const shown = versionFilter ? Number(versionFilter) : model.default_version || newest;
  const params = new URLSearchParams({ limit: '500' });
  if (versionFilter) params.set('version', versionFilter);
  await Promise.all([fill(distributions, () => distributionCard(name, shown)), fill(body, async () => {
    const { events } = await get(`/v1/models/${enc(name)}/drift?${params}`);
    if (!events.length) {
      return card(
        'No drift recorded',
        { id: 'drift-empty' },
        emptyState(
          `No drift events for ${name}${versionFilter ? ` v${versionFilter}` : ''}.`,
          'Drift is checked on predicts of versions deployed with training data or a baseline: per request when the body asks for it ("drift": {"detector": "adwin"}), or on every predict when the version\u2019s drift settings are continuous.',
        ),
      );
    }
    const byFeature = new Map();
    for (const e of events) {
      if (!byFeature.has(e.feature)) byFeature.set(e.feature, []);
      byFeature.get(e.feature).push(e);
    }
    const count = (kind) => events.filter((e) => e.kind === kind).length;
    const stats = h(
      'div',
      { class: 'stats' },
      stat('events', events.length),
      stat('drift', count('drift'), 'kind-drift'),
      // Warnings are not stored by every server; show the count only when there are some.
      count('warning') ? stat('warnings', count('warning'), 'kind-warning') : null,
      stat('deviations', count('deviation'), 'kind-deviation'),
      stat('features', byFeature.size),
    );
    const charts = [...byFeature.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([feature, list]) => {
        const series = KINDS.map(([kind, cls]) => ({
          name: kind,
          cls,
          shape: kind === 'deviation' ? 'diamond' : 'circle',
          line: kind !== 'deviation',
          points: list
            .filter((e) => e.kind === kind)
            .map((e) => ({ t: new Date(e.created_at).getTime(), y: e.rows.length, title: `${formatTime(e.created_at)} · v${e.version} · ${e.detector} ${e.kind}: ${e.rows.length} row${e.rows.length === 1 ? '' : 's'}` })),
        })).filter((s) => s.points.length);
        return card(
          feature,
          { subtitle: `${list.length} event${list.length === 1 ? '' : 's'} · ${list.reduce((n, e) => n + e.rows.length, 0)} drifted rows` },
          // One feature gets the whole width; several share it, two a row.
          timeChart(series, byFeature.size === 1 ? { yLabel: 'drifted rows', width: 1080, height: 260 } : { yLabel: 'drifted rows' }),
          legend(KINDS.filter(([kind]) => list.some((e) => e.kind === kind)).map(([, cls, label]) => [cls, label])),
        );
      });
    const newestFirst = [...events].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    return [
      stats,
      h('div', { class: 'chart-grid', id: 'drift-charts' }, charts),
      card(
        'Events',
        { subtitle: `The latest ${events.length} (at most 500), newest first.` },
        table(
          [
            { title: 'At', class: 'nowrap', cell: (e) => formatTime(e.created_at) },
            { title: 'Version', cell: (e) => `v${e.version}` },
            { title: 'Feature', cell: (e) => h('code', {}, e.feature) },
            { title: 'Kind', cell: (e) => badge(e.kind) },
            { title: 'Detector', cell: (e) => e.detector },
            { title: 'Rows', class: 'right', cell: (e) => String(e.rows.length) },
            { title: 'Row indices', cell: (e) => h('code', { class: 'clip', title: e.rows.join(', ') }, e.rows.length ? compactJson(e.rows, 40) : '—') },
            { title: 'Request', cell: (e) => h('code', { class: 'muted small' }, e.request_id ? e.request_id.slice(0, 12) : '—') },
          ],
          newestFirst,
          { id: 'drift-table' },
        ),
      ),
    ];
  })]);
}

/** Per feature, the version's baseline against the values it scored recently. */
async function distributionCard(name, version) {
  if (!version) return null;
  let d;
  try {
    d = await get(`/v1/models/${enc(name)}/versions/${enc(version)}/drift/distribution`);
  } catch (e) {
    if (e instanceof ApiFailure && e.code === 'baseline_not_found') {
      return card('Baseline against recent values', { id: 'drift-distributions' }, infoBox(`Version ${version} of ${name} has no drift baseline, so there is nothing to compare its inputs with. Deploy it with training data or a baseline CSV.`));
    }
    if (isMissingRoute(e)) return null;
    throw e;
  }
  const recent = d.recent_rows
    ? `the last ${d.recent_rows} rows it scored with a drift check on this server (${d.recent_seen} since the server started; the latest ${d.window} are kept)`
    : 'no recent rows yet';
  return card(
    `Baseline against recent values · v${d.version}`,
    {
      id: 'drift-distributions',
      subtitle: `Per feature, the share of rows in each of ${d.bins} bins: the ${d.baseline_rows} rows of the baseline against ${recent}. Below each chart, a box per side: 25th–75th percentile with the median, whiskers from the 5th to the 95th.`,
    },
    legend([['side-baseline', `baseline (${d.baseline_rows} rows)`], ['side-recent', `recent (${d.recent_rows} rows)`]]),
    d.recent_rows
      ? null
      : infoBox(`No predict of v${d.version} has been checked for drift on this server since it started: only the baseline is drawn. Predicts are checked when they ask ("drift": {"detector": "adwin"}) or when the version’s drift settings are enabled.`),
    h(
      'div',
      { class: 'chart-grid', id: 'drift-histograms' },
      d.features.map((f) => h('div', { class: 'feature-panel' }, h('h3', { class: 'feature-title' }, h('code', {}, f.feature)), histogramChart(f), featureStats(f))),
    ),
  );
}

/** Mean, median, p5 and p95 of both sides, in a small grid under a feature's chart. */
function featureStats(f) {
  const num = (v) => (v === null || v === undefined ? '—' : Number(v.toPrecision(4)).toString());
  const cells = [h('span', { class: 'head' }, ''), ...['mean', 'median', 'p5', 'p95'].map((t) => h('span', { class: 'head num' }, t))];
  for (const [label, side] of [['baseline', f.baseline], ['recent', f.recent]]) {
    cells.push(h('span', {}, label), ...[side.mean, side.quantiles.p50, side.quantiles.p5, side.quantiles.p95].map((v) => h('span', { class: 'num' }, num(v))));
  }
  return h('div', { class: 'feature-stats' }, cells);
}

