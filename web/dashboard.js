/*
 * The dashboard: per pool what it can hold, what it stores and what was promised
 * (capacity vs stored vs provisioned, with thin over-commit), its dedup and compression
 * ratios, and a button to compact it; then live I/O from the sampler (io.js): current,
 * peak and total figures as numbers, IOPS and throughput over the last minute as uPlot
 * charts, and the volumes busy in the last second. Pools refresh on pool and volume
 * events and every few seconds (written data changes stored bytes without an event).
 */
import uPlot from '/vendor/uplot/uPlot.esm.js';
import { api, url } from './api.js';
import { formatBytes, formatOps, formatPercent, formatRate, formatRatio } from './format.js';
import { io } from './io.js';
import { action, coalesced, facts, figure, h, showError, showNotice } from './ui.js';

const poolRefreshMs = 5000;
const windowSeconds = 60;

function meter(label, value, total, text, test) {
  const fraction = total > 0 ? value / total : 0;
  const width = `${Math.min(100, fraction * 100).toFixed(1)}%`;
  return h(
    'div',
    { class: 'meter-row' },
    h('span', { class: 'meter-label' }, label),
    h(
      'span',
      { class: `meter${fraction > 1 ? ' over' : fraction > 0.85 ? ' high' : ''}`, role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': total, 'aria-valuenow': value },
      h('span', { class: 'meter-fill', style: `width: ${width}` }),
    ),
    h('span', { class: 'meter-text', 'data-test': test }, text),
  );
}

function poolCard(pool) {
  const used = pool.storedBytes + pool.metadataBytes;
  const compact = h('button', { type: 'button', 'data-test': 'pool-compact' }, 'Compact now');
  compact.addEventListener('click', () =>
    action(compact, `Compacting pool ${pool.name}`, async () => {
      const task = await api.post(url`/api/v1/pools/${pool.name}/compact`, {});
      showNotice(`Compaction of pool ${pool.name} started (task ${task.id}, see Tasks)`);
    }),
  );
  return h(
    'article',
    { class: 'card', 'data-test': 'pool-card', 'data-pool': pool.name, 'aria-label': `Pool ${pool.name}` },
    h(
      'header',
      {},
      h('h3', {}, pool.name),
      h('span', { class: 'chips' }, h('span', { class: 'chip' }, `${formatBytes(pool.policy.blockSize)} blocks`), h('span', { class: 'chip' }, pool.policy.dedup ? 'dedup' : 'no dedup'), h('span', { class: 'chip' }, pool.policy.compression)),
    ),
    meter('Stored', used, pool.capacityBytes, `${formatBytes(used)} of ${formatBytes(pool.capacityBytes)} (${formatPercent(pool.usageFraction)})`, 'pool-usage'),
    meter('Provisioned', pool.logicalBytes, pool.capacityBytes, `${formatBytes(pool.logicalBytes)}, ${formatRatio(pool.overcommitRatio)} of capacity`, 'pool-provisioned'),
    facts([
      ['Capacity', figure('pool-capacity', pool.capacityBytes, formatBytes(pool.capacityBytes))],
      ['Free on host', figure('pool-available', pool.availableBytes, formatBytes(pool.availableBytes))],
      ['Provisioned (logical)', figure('pool-logical', pool.logicalBytes, formatBytes(pool.logicalBytes))],
      ['Written by volumes', figure('pool-mapped', pool.mappedBytes, formatBytes(pool.mappedBytes))],
      ['Stored in packs', figure('pool-stored', pool.storedBytes, formatBytes(pool.storedBytes))],
      ['Metadata', figure('pool-metadata', pool.metadataBytes, formatBytes(pool.metadataBytes))],
      ['Dedup ratio', figure('pool-dedup', pool.dedupRatio, formatRatio(pool.dedupRatio))],
      ['Compression ratio', figure('pool-compression', pool.compressionRatio, formatRatio(pool.compressionRatio))],
      ['Thin over-commit', figure('pool-overcommit', pool.overcommitRatio, formatRatio(pool.overcommitRatio))],
      ['Volumes / snapshots', `${pool.volumes} / ${pool.snapshots}`],
      ['Checksum errors', h('span', { class: pool.checksumErrors > 0 ? 'bad' : '' }, figure('pool-checksum-errors', pool.checksumErrors, String(pool.checksumErrors)))],
      ['Reclaimed so far', formatBytes(pool.reclaim.bytesFreed)],
    ]),
    h('div', { class: 'buttons' }, compact),
  );
}

function createPoolForm(onCreated) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', 'data-test': 'pool-name' });
  const blockSize = h('select', { name: 'blockSize' }, h('option', { value: '' }, 'default'), [4, 16, 64, 128, 256, 1024].map((k) => h('option', { value: k * 1024 }, `${k} KiB`)));
  const compression = h('select', { name: 'compression' }, h('option', { value: '' }, 'default'), ['zstd', 'lz4', 'none'].map((c) => h('option', { value: c }, c)));
  const dedup = h('input', { type: 'checkbox', name: 'dedup', checked: true });
  const submit = h('button', { class: 'primary', 'data-test': 'pool-create' }, 'Create pool');
  const form = h(
    'form',
    { class: 'inline-form' },
    h('label', {}, 'Name', name),
    h('label', {}, 'Block size', blockSize),
    h('label', {}, 'Compression', compression),
    h('label', { class: 'check' }, dedup, 'Dedup'),
    submit,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void action(submit, `Creating pool ${name.value}`, async () => {
      const body = { name: name.value.trim(), dedup: dedup.checked };
      if (blockSize.value) body.blockSize = Number(blockSize.value);
      if (compression.value) body.compression = compression.value;
      await api.post('/api/v1/pools', body);
      showNotice(`Pool ${body.name} created`);
      form.reset();
      onCreated();
    });
  });
  return h('details', {}, h('summary', {}, 'New pool'), form, h('p', { class: 'hint' }, 'A pool’s block size, dedup and compression are fixed when it is created.'));
}

function tile(label, main, peak) {
  return h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label), h('span', { class: 'tile-value' }, main), peak ? h('span', { class: 'tile-sub' }, 'peak ', peak) : null);
}

/**
 * Chart data [times, reads, writes] for the last minute: a first point without values
 * at the minute's start keeps the x axis one minute wide from the first sample on.
 */
function series(samples, read, write) {
  if (samples.length === 0) return [[], [], []];
  const start = samples.at(-1).timeMs / 1000 - windowSeconds;
  const kept = samples.filter((sample) => sample.timeMs / 1000 > start);
  return [[start, ...kept.map((s) => s.timeMs / 1000)], [null, ...kept.map((s) => s[read])], [null, ...kept.map((s) => s[write])]];
}

function chart(element, format) {
  const line = (label, stroke, fill) => ({ label, stroke, fill, width: 2, value: (_u, v) => (v === null || v === undefined ? '—' : format(v)) });
  return new uPlot(
    {
      width: Math.max(300, element.clientWidth),
      height: 200,
      series: [{}, line('Read', '#2563a8', 'rgba(37, 99, 168, 0.12)'), line('Write', '#c8641c', 'rgba(200, 100, 28, 0.12)')],
      axes: [{}, { size: 90, values: (_u, ticks) => ticks.map(format) }],
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max ?? 0, 1)] } },
    },
    [[], [], []],
    element,
  );
}

function ioFigures() {
  const last = io.samples.at(-1);
  const totals = (io.latest?.volumes ?? []).reduce((sum, entry) => ({ read: sum.read + entry.readBytes, write: sum.write + entry.writeBytes }), { read: 0, write: 0 });
  const now = (key) => last?.[key] ?? 0;
  return [
    tile('Read IOPS', figure('io-read-iops', now('readOps'), formatOps(now('readOps'))), figure('io-read-iops-peak', io.peak('readOps'), formatOps(io.peak('readOps')))),
    tile('Write IOPS', figure('io-write-iops', now('writeOps'), formatOps(now('writeOps'))), figure('io-write-iops-peak', io.peak('writeOps'), formatOps(io.peak('writeOps')))),
    tile('Read throughput', figure('io-read-rate', now('readBytes'), formatRate(now('readBytes'))), figure('io-read-rate-peak', io.peak('readBytes'), formatRate(io.peak('readBytes')))),
    tile('Write throughput', figure('io-write-rate', now('writeBytes'), formatRate(now('writeBytes'))), figure('io-write-rate-peak', io.peak('writeBytes'), formatRate(io.peak('writeBytes')))),
    tile('Read since daemon start', figure('io-read-total', totals.read, formatBytes(totals.read))),
    tile('Written since daemon start', figure('io-write-total', totals.write, formatBytes(totals.write))),
  ];
}

function busyVolumes() {
  const busy = (io.samples.at(-1)?.volumes ?? []).filter((entry) => entry.readOps + entry.writeOps > 0).sort((a, b) => b.readOps + b.writeOps - (a.readOps + a.writeOps));
  if (busy.length === 0) return h('p', { class: 'hint' }, 'No volume I/O in the last second.');
  return h(
    'table',
    { 'data-test': 'io-volumes' },
    h('thead', {}, h('tr', {}, ['Volume', 'Read IOPS', 'Write IOPS', 'Read', 'Write'].map((title) => h('th', {}, title)))),
    h('tbody', {}, busy.slice(0, 10).map((entry) => h('tr', {}, h('td', {}, entry.volume), h('td', {}, formatOps(entry.readOps)), h('td', {}, formatOps(entry.writeOps)), h('td', {}, formatRate(entry.readBytes)), h('td', {}, formatRate(entry.writeBytes))))),
  );
}

export function mount(root) {
  const pools = h('div', { class: 'cards', 'data-test': 'pools' }, h('p', { class: 'hint' }, 'Loading pools…'));
  const figures = h('div', { class: 'tiles', 'data-test': 'io-figures' });
  const ioError = h('p', { class: 'inline-error', role: 'alert', hidden: true });
  const iopsElement = h('div', { class: 'chart', 'data-test': 'chart-iops' });
  const throughputElement = h('div', { class: 'chart', 'data-test': 'chart-throughput' });
  const volumes = h('div');
  root.append(
    h('h1', {}, 'Dashboard'),
    h('section', { 'aria-label': 'Pools' }, h('h2', {}, 'Pools'), pools, createPoolForm(() => void refresh())),
    h(
      'section',
      { 'aria-label': 'Live I/O' },
      h('h2', {}, 'Live I/O'),
      ioError,
      figures,
      h('div', { class: 'charts' }, h('figure', {}, h('figcaption', {}, 'IOPS (operations per second)'), iopsElement), h('figure', {}, h('figcaption', {}, 'Throughput'), throughputElement)),
      h('h3', {}, 'Busiest volumes'),
      volumes,
    ),
  );

  const iops = chart(iopsElement, formatOps);
  const throughput = chart(throughputElement, formatRate);
  const resize = new ResizeObserver(() => {
    for (const [plot, element] of [[iops, iopsElement], [throughput, throughputElement]]) plot.setSize({ width: Math.max(300, element.clientWidth), height: 200 });
  });
  resize.observe(iopsElement);
  resize.observe(throughputElement);

  const drawIo = () => {
    iops.setData(series(io.samples, 'readOps', 'writeOps'));
    throughput.setData(series(io.samples, 'readBytes', 'writeBytes'));
    figures.replaceChildren(...ioFigures());
    volumes.replaceChildren(busyVolumes());
    ioError.hidden = !io.error;
    ioError.textContent = io.error ? `I/O figures are not updating: ${io.error.message} (${io.error.code ?? 'error'})` : '';
  };
  const unsubscribe = io.subscribe(drawIo);
  drawIo();

  const refresh = coalesced(async () => {
    try {
      const list = await api.get('/api/v1/pools');
      pools.replaceChildren(...(list.length > 0 ? list.map(poolCard) : [h('p', { class: 'hint' }, 'No pools.')]));
    } catch (error) {
      showError(error, 'Loading pools');
    }
  });
  void refresh();
  const timer = setInterval(() => void refresh(), poolRefreshMs);

  return {
    onEvent(event) {
      if (/^(pool|volume|snapshot)\./.test(event.kind)) void refresh();
    },
    dispose() {
      clearInterval(timer);
      unsubscribe();
      resize.disconnect();
      iops.destroy();
      throughput.destroy();
    },
  };
}
