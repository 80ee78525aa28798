/** A gauge (or, with type counter, a total that only grows) as the Prometheus text format (0.0.4) shows it. */
export interface Gauge {
  name: string;
  help: string;
  value: () => number;
  type?: 'gauge' | 'counter';
}

export const METRICS_PATH = '/metrics';

/** GET /metrics: the gauges in the Prometheus text exposition format, for scrapers and operators. */
export function renderMetrics(gauges: readonly Gauge[]): string {
  return gauges.map((g) => `# HELP ${g.name} ${g.help}\n# TYPE ${g.name} ${g.type ?? 'gauge'}\n${g.name} ${g.value()}\n`).join('');
}
