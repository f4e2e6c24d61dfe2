// The maas console: the jobs list and one job's page.
// A classic script loaded after app.js (see index.html); it shares app.js's helpers.
'use strict';

// GET /v1/jobs answers {jobs: [{id, name, state, priority, owner, origin, submitted_at,
// started_at, finished_at, duration_secs, …}], total}; GET /v1/jobs/summary the counts.
const jobDuration = (job) => (Number.isFinite(job.duration_secs) ? job.duration_secs : null);
const jobState = (job) => String(job.state || 'unknown');
const jobName = (job) => String(job.name || job.id || '?');

async function jobsPage(content) {
  setCrumbs([['Jobs']]);
  content.append(pageHead('Jobs', 'Training jobs run by the scheduler, with their states and durations.', button('Refresh', render, { id: 'jobs-refresh' })));
  const body = h('div');
  content.append(body);
  await fill(body, async () => {
    let answer;
    let summary;
    try {
      [answer, summary] = await Promise.all([get('/v1/jobs?limit=200'), get('/v1/jobs/summary')]);
    } catch (e) {
      if (isMissingRoute(e)) return card('Jobs', { id: 'jobs-unavailable' }, infoBox('The training scheduler is not available on this server.'));
      throw e;
    }
    const jobs = answer.jobs || [];
    if (!jobs.length) return card('Jobs', {}, emptyState('No jobs yet', 'Submit a workflow (POST /v1/jobs or `maas job submit FILE`); its jobs are listed here.'));
    const counts = Object.entries(summary.states || {}).filter(([, n]) => n > 0);
    const ratio = summary.success_ratio === null || summary.success_ratio === undefined ? '—' : `${Math.round(summary.success_ratio * 100)}%`;
    const timed = jobs.filter((j) => jobDuration(j) !== null).slice(0, 30);
    return [
      h('div', { class: 'stats', id: 'jobs-summary' }, stat('jobs', summary.total), stat('success', ratio), stat('in progress', summary.in_progress),
        stat('mean duration', formatDuration(summary.average_duration_secs)), counts.map(([s, n]) => stat(s, n, `state-${s}`))),
      timed.length
        ? card(
          'Durations',
          { subtitle: `The ${timed.length} most recent jobs with a start time; running jobs are measured up to now.` },
          durationChart(timed.map((j) => ({ label: jobName(j), value: jobDuration(j), cls: `state-${jobState(j)}`, title: `${jobName(j)}: ${jobState(j)}, ${formatDuration(jobDuration(j))}` }))),
        )
        : null,
      card(
        'Jobs',
        {},
        table(
          [
            { title: 'Job', cell: (j) => h('a', { href: `#/jobs/${enc(j.id)}`, title: `open job ${j.id}`, class: 'job-link' }, h('code', {}, String(j.id).slice(0, 12))) },
            { title: 'Name', cell: (j) => h('a', { href: `#/jobs/${enc(j.id)}`, class: 'strong-link' }, jobName(j)) },
            { title: 'State', cell: (j) => badge(jobState(j)) },
            { title: 'Priority', class: 'muted', cell: (j) => j.priority },
            { title: 'Owner', class: 'muted', cell: (j) => j.owner + (j.model ? ` (${j.origin}: ${j.model})` : '') },
            { title: 'Submitted', class: 'nowrap muted', cell: (j) => formatTime(j.submitted_at) },
            { title: 'Finished', class: 'nowrap muted', cell: (j) => formatTime(j.finished_at) },
            { title: 'Duration', class: 'right nowrap', cell: (j) => formatDuration(jobDuration(j)) },
          ],
          jobs,
          { id: 'jobs-table' },
        ),
      ),
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// One job: GET /v1/jobs/{id} (tasks with their attempts), the selected task's log followed
// through /logs?offset= while it runs, and /results (metrics, variables, artifacts) once the job
// has ended.

const ENDED_JOB = new Set(['finished', 'failed', 'canceled', 'killed']);
const RUNNING_TASK = new Set(['pending', 'running']);
const LOG_POLL_MS = 1000;
const JOB_POLL_MS = 1500;
// The most one log answer carries (the server's chunk).
const LOG_CHUNK_BYTES = 1024 * 1024;

// An attempt's times: the time of day (the task's row has the dates).
/** The clock part of an RFC 3339 time (attempts' times), or a dash. */
const clockTime = (text) => (Number.isFinite(Date.parse(text)) ? formatTime(text).slice(11) : '—');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function jobPage(content, id) {
  setCrumbs([['Jobs', '#/jobs'], [id.slice(0, 12)]]);
  const head = h('div');
  const meta = h('div');
  const tasks = h('div');
  const logs = h('div');
  const results = h('div');
  content.append(
    head,
    card('Job', { id: 'job-card' }, meta),
    card('Tasks', { id: 'tasks-card', subtitle: 'Each task with its attempts; pick one to read its log.' }, tasks),
    logs,
    card('Results', { id: 'results-card', subtitle: 'What the tasks exported: metrics, variables and artifact files.' }, results),
  );
  // `pinned`: the operator picked a task; until then the page follows whichever task runs.
  const view = { job: null, selected: null, pinned: false, resultsState: null };
  const log = logPanel(id);
  logs.append(log.element);

  const show = (job) => {
    view.job = job;
    setCrumbs([['Jobs', '#/jobs'], [jobName(job)]]);
    head.replaceChildren(
      pageHead(
        h('span', { class: 'title-with-badge' }, h('span', { id: 'job-name' }, jobName(job)), badge(jobState(job), 'job-state')),
        `Job ${job.id}`,
        button('Refresh', (ev) => busy(ev.currentTarget, 'Refreshing…', refresh), { id: 'job-refresh' }),
      ),
    );
    meta.replaceChildren(...jobMeta(job).filter(Boolean));
    const list = job.tasks || [];
    if (!view.pinned || !list.some((t) => t.name === view.selected)) {
      const running = list.find((t) => t.state === 'running');
      const last = [...list].filter((t) => t.started_at).sort((a, b) => (a.started_at < b.started_at ? 1 : -1))[0];
      const pick = running || (list.some((t) => t.name === view.selected) ? null : last || list[0]);
      if (pick) view.selected = pick.name;
    }
    tasks.replaceChildren(tasksTable(list, view.selected, (name) => {
      view.selected = name;
      view.pinned = true;
      show(view.job);
    }));
    const task = list.find((t) => t.name === view.selected);
    if (task) log.follow(task);
  };

  const loadResults = async () => {
    // Again only when a task's state changed: results appear as tasks end.
    const key = [view.job.state, ...(view.job.tasks || []).map((t) => `${t.name}:${t.state}:${t.attempt}`)].join(' ');
    if (view.resultsState === key) return;
    view.resultsState = key;
    await fill(results, async () => {
      try {
        return jobResults(id, await get(`/v1/jobs/${enc(id)}/results`));
      } catch (e) {
        if (e instanceof ApiFailure && e.code === 'forbidden') return infoBox(`Only the job\u2019s owner (${view.job.owner}) and admins read its results.`);
        throw e;
      }
    });
  };

  async function refresh() {
    show(await get(`/v1/jobs/${enc(id)}`));
    await loadResults();
  }
  await refresh();
  // Follow the job while it runs: states, attempts and, when it ends, its results.
  (async () => {
    while (head.isConnected && view.job && !ENDED_JOB.has(view.job.state)) {
      await sleep(JOB_POLL_MS);
      if (!head.isConnected) return;
      try {
        await refresh();
      } catch (e) {
        if (e instanceof SessionEnded) return;
      }
    }
  })();
}

function jobMeta(job) {
  const item = (label, value, id) => [h('dt', {}, label), h('dd', { id }, value)];
  const vars = Object.entries(job.variables || {});
  return [
    h(
      'dl',
      { class: 'job-meta' },
      item('State', badge(jobState(job))),
      item('Submitted', formatTime(job.submitted_at)),
      item('Started', formatTime(job.started_at), 'job-started'),
      item('Finished', formatTime(job.finished_at), 'job-finished'),
      item(ENDED_JOB.has(job.state) ? 'Duration' : 'Running for', formatDuration(jobDuration(job)), 'job-duration'),
      item('Owner', job.owner),
      item('Priority', job.priority),
      item('Origin', job.model ? `${job.origin} (${job.model})` : job.origin),
      job.workflow_version ? item('Workflow version', `v${job.workflow_version}`) : null,
    ),
    job.reason ? h('div', { class: 'alert alert-info', role: 'status', id: 'job-reason' }, h('div', { class: 'alert-body' }, job.reason)) : null,
    vars.length ? h('p', { class: 'muted small' }, 'Variables: ', vars.map(([k, v], i) => [i ? ', ' : '', h('code', {}, `${k}=${v}`)])) : null,
  ];
}

/** One line per attempt: number, state, times, exit status, error. */
function attemptList(task) {
  const ended = task.attempts || [];
  const items = ended.map((a) => {
    const [t0, t1] = [Date.parse(a.started_at), Date.parse(a.finished_at)];
    const seconds = Number.isFinite(t0) && Number.isFinite(t1) ? (t1 - t0) / 1000 : null;
    return h(
      'li',
      { class: 'attempt' },
      h('strong', {}, `#${a.attempt}`),
      ' ',
      badge(a.state || 'ended'),
      h('span', { class: 'muted' }, ` ${clockTime(a.started_at)} → ${clockTime(a.finished_at)} (${formatDuration(seconds)})`),
      a.exit_code === null || a.exit_code === undefined ? null : h('span', { class: 'attempt-exit' }, ` · exit ${a.exit_code}`),
      a.native_id ? h('span', { class: 'muted' }, ` · ${a.executor === 'slurm' ? 'Slurm job' : 'pid'} ${a.native_id}`) : null,
      a.error ? h('span', { class: 'error-text' }, a.error) : null,
    );
  });
  if (task.attempt > ended.length && RUNNING_TASK.has(task.state)) {
    items.push(h('li', { class: 'attempt' }, h('strong', {}, `#${task.attempt}`), ' ', badge(task.state), h('span', { class: 'muted' }, ` since ${formatTime(task.started_at)}`)));
  }
  if (!items.length) return h('span', { class: 'muted' }, 'not started');
  return h('ul', { class: 'attempts' }, items);
}

function tasksTable(list, selected, onSelect) {
  const wrap = table(
    [
      { title: 'Task', cell: (t) => [h('strong', {}, t.name), h('div', { class: 'muted small' }, t.kind || '—')] },
      { title: 'State', cell: (t) => badge(t.state) },
      { title: 'Executor', class: 'nowrap', cell: (t) => [t.executor || '—', t.native_id ? h('div', { class: 'muted small', title: t.executor === 'slurm' ? 'Slurm job id' : 'process id' }, `${t.executor === 'slurm' ? 'Slurm job' : 'pid'} ${t.native_id}`) : null] },
      { title: 'Attempts', cell: (t) => [h('div', { class: 'small' }, `${t.attempt} of ${t.max_attempts}`), attemptList(t)] },
      { title: 'Started', class: 'nowrap muted', cell: (t) => formatTime(t.started_at) },
      { title: 'Finished', class: 'nowrap muted', cell: (t) => formatTime(t.finished_at) },
      { title: 'Duration', class: 'right nowrap', cell: (t) => formatDuration(t.duration_secs) },
      { title: 'Depends on', class: 'muted', cell: (t) => (t.depends_on.length ? t.depends_on.join(', ') : '—') },
    ],
    list,
    { id: 'tasks-table', empty: emptyState('No tasks', 'This job has no task.') },
  );
  const rows = wrap.querySelectorAll ? wrap.querySelectorAll('tbody tr') : [];
  rows.forEach((tr, i) => {
    const name = list[i].name;
    tr.classList.add('clickable');
    tr.dataset.task = name;
    if (name === selected) tr.classList.add('selected');
    tr.addEventListener('click', () => onSelect(name));
  });
  return wrap;
}

/**
 * The log of one task: stdout or stderr of an attempt, read from byte `offset` on. While the
 * task may still write (`X-Log-Complete: false`) it is polled every second and appended, and
 * the view follows the end unless the reader scrolled up.
 */
function logPanel(jobId) {
  const stream = h('select', { id: 'log-stream', 'aria-label': 'stream' }, h('option', { value: 'stdout' }, 'stdout'), h('option', { value: 'stderr' }, 'stderr'));
  const attempt = h('select', { id: 'log-attempt', 'aria-label': 'attempt' });
  const status = h('span', { class: 'muted small', id: 'log-status' });
  const text = h('pre', { class: 'log', id: 'task-log' });
  const title = h('span', {});
  const element = card('Log', { id: 'log-card' }, h('div', { class: 'log-head' }, title, field('Stream', stream), field('Attempt', attempt), h('div', { class: 'grow' }), status), text);
  const state = { task: null, key: null, run: 0 };

  const start = () => {
    const run = ++state.run;
    const task = state.task;
    const query = { stream: stream.value };
    if (attempt.value) query.attempt = attempt.value;
    text.textContent = '';
    const decoder = new TextDecoder();
    let offset = 0;
    (async () => {
      for (;;) {
        if (run !== state.run || !text.isConnected) return;
        let response;
        try {
          response = await request('GET', `/v1/jobs/${enc(jobId)}/tasks/${enc(task.name)}/logs?${new URLSearchParams({ ...query, offset: String(offset) })}`);
          if (!response.ok) throw await readFailure(response);
        } catch (e) {
          if (run === state.run) status.replaceChildren(...[errorBox(e)].filter(Boolean));
          return;
        }
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (run !== state.run) return;
        const complete = response.headers.get('x-log-complete') === 'true';
        offset = Number(response.headers.get('x-log-offset')) || offset + bytes.length;
        if (bytes.length) {
          const atEnd = text.scrollTop + text.clientHeight >= text.scrollHeight - 8;
          text.append(decoder.decode(bytes, { stream: !complete }));
          if (atEnd) text.scrollTop = text.scrollHeight;
        }
        status.textContent = complete ? `complete · ${formatBytes(offset)}` : `following… ${formatBytes(offset)}`;
        status.dataset.complete = String(complete);
        if (complete) return;
        // A full chunk means more is there already: read on at once; otherwise wait for more.
        if (bytes.length < LOG_CHUNK_BYTES) await sleep(LOG_POLL_MS);
      }
    })();
  };

  stream.addEventListener('change', start);
  attempt.addEventListener('change', start);
  return {
    element,
    /** Show `task`'s log; called again on every refresh of the job, it restarts only on change. */
    follow(task) {
      const attempts = Math.max(task.attempt, 0);
      const key = `${task.name}/${attempts}`;
      state.task = task;
      if (key === state.key) return;
      state.key = key;
      title.replaceChildren(h('strong', {}, task.name), ' ', h('span', { class: 'muted small' }, task.kind || ''));
      attempt.replaceChildren(...Array.from({ length: attempts }, (_, i) => attempts - i).map((n) => h('option', { value: n === attempts ? '' : String(n) }, n === attempts ? `#${n} (latest)` : `#${n}`)));
      if (!attempts) attempt.replaceChildren(h('option', { value: '' }, 'not started'));
      start();
    },
  };
}

/** Flatten nested metrics into `a.b` keys with plain values. */
function flatMetrics(value, prefix = '', out = []) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatMetrics(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.push([prefix, value]);
  }
  return out;
}

function metricValue(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Number(v.toPrecision(6)).toString();
  return compactJson(v, 80);
}

function jobResults(jobId, answer) {
  const withOutput = (answer.tasks || []).filter((t) => Object.keys(t.metrics || {}).length || Object.keys(t.variables || {}).length || (t.artifacts || []).length);
  if (!withOutput.length) {
    return emptyState(
      ENDED_JOB.has(answer.state) ? 'No results' : 'No results yet',
      'A task\u2019s metrics and variables (its result.json) and the files it writes under artifacts/ are listed here.',
    );
  }
  return h(
    'div',
    { id: 'job-results' },
    withOutput.map((t) =>
      h(
        'div',
        { class: 'task-results', 'data-task': t.name },
        h('h3', {}, t.name, ' ', badge(t.state)),
        Object.keys(t.metrics || {}).length
          ? table(
            [
              { title: 'Metric', cell: ([k]) => h('code', {}, k) },
              { title: 'Value', class: 'num', cell: ([, v]) => metricValue(v) },
            ],
            flatMetrics(t.metrics),
            { id: `metrics-${t.name}` },
          )
          : null,
        Object.keys(t.variables || {}).length
          ? h('p', { class: 'small' }, 'Variables: ', Object.entries(t.variables).map(([k, v], i) => [i ? ', ' : '', h('code', {}, `${k}=${v}`)]))
          : null,
        (t.artifacts || []).length
          ? h(
            'ul',
            { class: 'artifact-list' },
            t.artifacts.map((a) =>
              h(
                'li',
                {},
                h('code', {}, a.path),
                h('span', { class: 'muted small' }, formatBytes(a.size_bytes)),
                button('Download', (ev) => downloadArtifact(ev.currentTarget, jobId, t.name, a.path), { kind: 'ghost', data: { artifact: a.path } }),
              ),
            ),
          )
          : null,
      ),
    ),
  );
}

/** The artifacts route needs the bearer, which a plain link would not send: fetch, then save. */
function downloadArtifact(btn, jobId, task, path) {
  return busy(btn, 'Downloading…', async () => {
    try {
      const route = `/v1/jobs/${enc(jobId)}/tasks/${enc(task)}/artifacts/${path.split('/').map(enc).join('/')}`;
      const response = await request('GET', route);
      if (!response.ok) throw await readFailure(response);
      const url = URL.createObjectURL(await response.blob());
      const link = h('a', { href: url, download: path.split('/').pop() });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      btn.closest('li').append(...[errorBox(e)].filter(Boolean));
    }
  });
}
