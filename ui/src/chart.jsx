import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

const COLORS = ['#2563eb', '#0d9488', '#9333ea', '#ca8a04', '#dc2626', '#ea580c', '#be185d', '#4b5563'];

/**
 * A uPlot line chart: `data` is uPlot's [[x...], [y...], ...] (x in seconds), `series` the names of
 * the y series; `label` the accessible name of the figure.
 */
export function Chart({ data, series, label, xRange }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    const width = () => Math.max(260, el.clientWidth);
    const opts = {
      width: width(),
      height: 260,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { size: 50 }],
      series: [
        { label: 'time' },
        ...series.map((s, i) => ({
          label: s,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          dash: /failure/.test(s) ? [6, 4] : undefined,
          points: { show: false },
        })),
      ],
      legend: { live: false },
    };
    plot.current = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: width(), height: 260 });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [series.join('|')]);
  useEffect(() => {
    if (!plot.current) return;
    plot.current.setData(data, !xRange);
    if (xRange) plot.current.setScale('x', { min: xRange[0], max: xRange[1] });
  }, [data, xRange && xRange[0], xRange && xRange[1]]);
  return <div class="chart" ref={box} role="img" aria-label={label} />;
}
