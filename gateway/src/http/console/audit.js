// The maas console: the audit trail.
// A classic script loaded after app.js (see index.html); it shares app.js's helpers.
'use strict';

const AUDIT_PAGE = 50;

async function auditPage(content, query) {
  setCrumbs([['Audit trail']]);
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const filters = { actor: query.get('actor') || '', model: query.get('model') || '', kind: query.get('kind') || '' };
  const inputs = Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, h('input', { id: `audit-${k}`, name: k, value: v, autocomplete: 'off', placeholder: { actor: 'admin', model: 'iris', kind: 'any' }[k] })]));
  const go = (params) => {
    const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== '' && v !== 0 && v !== '0'));
    location.hash = `#/audit?${new URLSearchParams(clean)}`;
  };
  const params = new URLSearchParams({ limit: String(AUDIT_PAGE), offset: String(offset) });
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);

  const csv = button('Download CSV', (ev) =>
    busy(ev.currentTarget, 'Downloading…', async () => {
      const csvParams = new URLSearchParams({ format: 'csv' });
      for (const [k, v] of Object.entries(filters)) if (v) csvParams.set(k, v);
      try {
        const response = await request('GET', `/v1/audit?${csvParams}`);
        if (!response.ok) throw await readFailure(response);
        const url = URL.createObjectURL(await response.blob());
        const link = h('a', { href: url, download: `maas-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.csv` });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) {
        body.prepend(...[errorBox(e)].filter(Boolean));
      }
    }), { id: 'audit-csv' });

  const form = h(
    'form',
    {
      class: 'inline-form',
      id: 'audit-filters',
      onsubmit: (event) => {
        event.preventDefault();
        go({ actor: inputs.actor.value.trim(), model: inputs.model.value.trim(), kind: inputs.kind.value.trim() });
      },
    },
    field('Actor', inputs.actor),
    field('Model', inputs.model),
    field('Kind', inputs.kind),
    h('div', { class: 'button-row' }, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Filter'), button('Clear', () => go({}), { kind: 'ghost' })),
  );
  const body = h('div');
  content.append(pageHead('Audit trail', 'Every change made to this server: who, from where, under which request.', csv), card('Filters', {}, form), body);
  await fill(body, async () => {
    let answer;
    try {
      answer = await get(`/v1/audit?${params}`);
    } catch (e) {
      if (isMissingRoute(e)) return card('Audit trail', { id: 'audit-unavailable' }, infoBox('Audit trail not available on this server.'));
      throw e;
    }
    const events = answer.events || [];
    const total = answer.total ?? events.length;
    const first = events.length ? offset + 1 : 0;
    const last = offset + events.length;
    const pager = h(
      'div',
      { class: 'pager' },
      h('span', { class: 'muted', id: 'audit-range' }, total ? `${first}–${last} of ${total}` : 'no entries'),
      button('← Newer', () => go({ ...filters, offset: Math.max(0, offset - AUDIT_PAGE) }), { kind: 'secondary', id: 'audit-prev' }),
      button('Older →', () => go({ ...filters, offset: offset + AUDIT_PAGE }), { kind: 'secondary', id: 'audit-next' }),
    );
    pager.querySelector('#audit-prev').disabled = offset === 0;
    pager.querySelector('#audit-next').disabled = last >= total;
    return card(
      'Entries',
      { id: 'audit-card', actions: pager },
      table(
        [
          { title: 'At', class: 'nowrap', cell: (e) => formatTime(e.at) },
          { title: 'Actor', cell: (e) => [h('div', {}, h('strong', {}, e.actor || '—')), e.client ? h('div', { class: 'muted small nowrap', title: 'client address' }, e.client) : null] },
          { title: 'Kind', cell: (e) => h('span', { class: 'tag tag-kind' }, e.kind) },
          {
            title: 'Model',
            class: 'nowrap',
            cell: (e) => (e.model ? [h('a', { href: `#/models/${enc(e.model)}` }, e.model), e.version !== null && e.version !== undefined ? h('span', { class: 'muted' }, ` v${e.version}`) : null] : h('span', { class: 'muted' }, '—')),
          },
          { title: 'Request', cell: (e) => h('code', { class: 'muted small', title: e.request_id || '' }, e.request_id ? e.request_id.slice(0, 12) : '—') },
          { title: 'Details', class: 'details-col', cell: (e) => auditDetails(e.details) },
        ],
        events,
        { id: 'audit-table', empty: emptyState('No entries', Object.values(filters).some(Boolean) ? 'Nothing matches these filters.' : 'Changes made to models, versions, users and settings are recorded here.') },
      ),
    );
  });
}

function auditDetails(details) {
  if (details === null || details === undefined || (typeof details === 'object' && !Object.keys(details).length)) return h('span', { class: 'muted' }, '—');
  if (typeof details !== 'object' || Array.isArray(details)) return h('code', { class: 'clip', title: JSON.stringify(details) }, compactJson(details, 60));
  return h(
    'span',
    { class: 'kv-list', title: JSON.stringify(details) },
    Object.entries(details).map(([k, v]) => h('span', { class: 'kv' }, h('span', { class: 'kv-key' }, k), h('span', { class: 'kv-value' }, compactJson(v, 26)))),
  );
}
