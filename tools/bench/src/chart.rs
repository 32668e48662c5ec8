//! The SVG chart of a run (`--svg`): latency per second over the run, completions per second,
//! and the latency distribution by percentile.

use std::fmt::Write as _;

use super::report::{Report, Second};

impl Report {
    /// Latency over time: p50, p99 and max of each second, and completions per second.
    pub fn svg(&self) -> String {
        let (w, h, pad) = (800.0, 360.0, 50.0);
        let secs = self.timeline.len().max(2) as f64 - 1.0;
        let top = self
            .timeline
            .iter()
            .map(|s| s.max_ms)
            .fold(1.0_f64, f64::max);
        let busiest = self.timeline.iter().map(|s| s.completed).max().unwrap_or(1);
        let x = |i: usize| pad + i as f64 / secs * (w - 2.0 * pad);
        let y = |v: f64| h - pad - v / top * (h - 2.0 * pad);
        let line = |f: &dyn Fn(&Second) -> f64| {
            self.timeline
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{:.1},{:.1}", x(i), y(f(s))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{total}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{pad}\" y=\"20\">wxlogin bench: latency per second (ms; max {top:.1}) and completions (grey, max {busiest}/s)</text>\n\
             <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <text x=\"{pad}\" y=\"{t}\">0 s</text><text x=\"{r}\" y=\"{t}\" text-anchor=\"end\">{secs:.0} s</text>\n",
            b = h - pad,
            r = w - pad,
            t = h - pad + 16.0,
            total = 2.0 * h,
        );
        for (i, s) in self.timeline.iter().enumerate() {
            let bar = s.completed as f64 / busiest.max(1) as f64 * (h - 2.0 * pad);
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"{bar:.1}\" fill=\"#ccc\"/>",
                x(i) - 1.0,
                h - pad - bar
            );
        }
        for (legend, (colour, name, f)) in [
            (
                "#1f77b4",
                "p50",
                &(|s: &Second| s.p50_ms) as &dyn Fn(&Second) -> f64,
            ),
            ("#ff7f0e", "p99", &|s: &Second| s.p99_ms),
            ("#d62728", "max", &|s: &Second| s.max_ms),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{name}</title></polyline>",
                line(f)
            );
            let legend_x = w - pad - 150.0 + 50.0 * legend as f64;
            let _ = writeln!(
                svg,
                "<text x=\"{legend_x}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
                pad - 8.0
            );
        }
        svg.push_str(&self.distribution_panel(w, h, pad));
        svg.push_str("</svg>\n");
        svg
    }

    /// The latency distribution below the timeline: latency against percentile, the x axis
    /// stretched towards the tail (log of 1 / (1 − p)) as HdrHistogram plots it.
    fn distribution_panel(&self, w: f64, h: f64, pad: f64) -> String {
        let tail = |p: f64| (1.0 / (1.0 - p / 100.0).max(1e-5)).log10().min(5.0);
        let top = self
            .distribution
            .iter()
            .map(|&(_, v)| v)
            .fold(1.0_f64, f64::max);
        let x = |p: f64| pad + tail(p) / 5.0 * (w - 2.0 * pad);
        let y = |v: f64| 2.0 * h - pad - v / top * (h - 2.0 * pad);
        let points: Vec<String> = self
            .distribution
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", x(p), y(v)))
            .collect();
        let mut out = format!(
            "<text x=\"{pad}\" y=\"{}\">latency distribution (ms; max {top:.1}) by percentile</text>\n\
             <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"><title>latency by percentile</title></polyline>\n",
            h + 20.0,
            h + pad,
            points.join(" "),
            b = 2.0 * h - pad,
            r = w - pad,
        );
        for p in [0.0, 50.0, 90.0, 99.0, 99.9, 99.99] {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{p}%</text>",
                x(p),
                2.0 * h - pad + 16.0
            );
        }
        out
    }
}
