//! Line plots rendered to PNG with plotters (DejaVu Sans embedded, so no system fonts needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::render;
use crate::schedule::NoiseSchedule;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The font is compiled in; registering it cannot fail for a valid TTF.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One named curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of a figure.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// The x values are log10 of the quantity; ticks are labelled with the quantity itself.
    pub log_x: bool,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    ((x0, x1.max(x0 + 1e-9)), (y0 - pad, y1 + pad))
}

/// Draws `panels` side by side into an RGB buffer of `width`×`height`.
pub fn render(panels: &[Panel], width: u32, height: u32) -> Result<image::RgbImage> {
    register_font();
    let plot_err = |e: String| Error::Encode {
        format: "plot",
        reason: e,
    };
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(e.to_string()))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let ((x0, x1), (y0, y1)) = bounds(&panel.series);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| plot_err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc(&panel.x_label)
                .x_label_formatter(&|v| {
                    if panel.log_x {
                        let q = 10f64.powf(*v);
                        if q < 10.0 {
                            format!("{q:.1}")
                        } else {
                            format!("{q:.0}")
                        }
                    } else if v.fract() == 0.0 || v.abs() >= 10.0 {
                        format!("{v:.0}")
                    } else if v.abs() < 1.0 {
                        format!("{v:.2}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .y_desc(&panel.y_label)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| plot_err(e.to_string()))?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| plot_err(e.to_string()))?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| plot_err(e.to_string()))?;
        }
        root.present().map_err(|e| plot_err(e.to_string()))?;
    }
    Ok(image::RgbImage::from_raw(width, height, buf).expect("buffer size matches"))
}

/// The two panels that describe schedules: ᾱ_t and log-SNR(t) against t.
pub fn schedule_panels(schedules: &[NoiseSchedule]) -> [Panel; 2] {
    let series = |f: &dyn Fn(&NoiseSchedule, usize) -> f64| {
        schedules
            .iter()
            .map(|s| Series {
                name: s.config.beta_schedule.name().to_string(),
                points: (0..s.len()).map(|t| (t as f64, f(s, t))).collect(),
            })
            .collect()
    };
    [
        Panel {
            title: "ᾱ_t (signal kept)".into(),
            x_label: "timestep t".into(),
            y_label: "ᾱ_t".into(),
            series: series(&|s, t| s.alphas_cumprod[t]),
            log_x: false,
        },
        Panel {
            title: "log SNR(t) = ln(ᾱ_t / (1-ᾱ_t))".into(),
            x_label: "timestep t".into(),
            y_label: "log SNR".into(),
            series: series(&|s, t| s.log_snr(t)),
            log_x: false,
        },
    ]
}

/// Draws the schedule plot and writes it to `path` as PNG, atomically.
pub fn save_schedule_plot(schedules: &[NoiseSchedule], path: &Path) -> Result<()> {
    let img = render(&schedule_panels(schedules), 1200, 480)?;
    render::save_png(&img, path)
}
