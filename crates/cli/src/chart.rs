//! A PNG bar chart of the benchmark's query latencies: one bar per query, log scale, drawn
//! pixel by pixel (8x8 bitmap glyphs, no font files, no system libraries).

use std::io::Write;

use font8x8::{BASIC_FONTS, UnicodeFonts};

const WIDTH: usize = 1000;
const ROW: usize = 30;
const TOP: usize = 70;
const LABEL_X: usize = 16;
const BAR_X: usize = 390;
const BAR_MAX: usize = 470;
const SCALE: usize = 2;

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GREY: [u8; 3] = [200, 200, 200];
const BAR: [u8; 3] = [46, 110, 180];

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: WHITE.repeat(width * height),
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, color: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let at = (yy * self.width + xx) * 3;
                if let Some(px) = self.pixels.get_mut(at..at + 3) {
                    px.copy_from_slice(&color);
                }
            }
        }
    }

    /// Draws `text` with its top left corner at (x, y); characters without a glyph are '?'.
    fn text(&mut self, x: usize, y: usize, text: &str, color: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let glyph = BASIC_FONTS
                .get(c)
                .or_else(|| BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            let gx = x + i * 8 * SCALE;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.fill(gx + col * SCALE, y + row * SCALE, SCALE, SCALE, color);
                    }
                }
            }
        }
    }
}

/// The bar length of `ms` on a log scale from 0.1 ms to `max_ms` (at least one pixel).
fn bar_len(ms: f64, max_ms: f64) -> usize {
    let lo = 0.1f64.ln();
    let hi = max_ms.max(1.0).ln();
    let t = ((ms.max(0.1).ln() - lo) / (hi - lo)).clamp(0.0, 1.0);
    ((t * BAR_MAX as f64) as usize).max(1)
}

/// Writes the chart of `bars` (label, milliseconds) titled `title` to `out` as PNG.
pub fn write_latency_png(
    out: impl Write,
    title: &str,
    subtitle: &str,
    bars: &[(&str, f64)],
) -> Result<(), png::EncodingError> {
    let height = TOP + bars.len() * ROW + 50;
    let mut canvas = Canvas::new(WIDTH, height);
    canvas.text(LABEL_X, 12, title, INK);
    canvas.text(LABEL_X, 38, subtitle, INK);
    let max_ms = bars.iter().map(|(_, ms)| *ms).fold(1.0, f64::max);
    // Decade grid lines with their values under the bars.
    let mut decade = 0.1f64;
    while decade <= max_ms * 1.0001 {
        let x = BAR_X + bar_len(decade, max_ms);
        canvas.fill(x, TOP - 4, 1, bars.len() * ROW, GREY);
        let label = if decade < 1.0 {
            format!("{decade:.1}")
        } else {
            format!("{decade:.0}")
        };
        canvas.text(
            x.saturating_sub(label.len() * 8),
            TOP + bars.len() * ROW + 4,
            &label,
            INK,
        );
        decade *= 10.0;
    }
    for (i, (label, ms)) in bars.iter().enumerate() {
        let y = TOP + i * ROW;
        canvas.text(LABEL_X, y + 6, label, INK);
        let len = bar_len(*ms, max_ms);
        canvas.fill(BAR_X, y + 2, len, ROW - 8, BAR);
        let value = if *ms < 10.0 {
            format!("{ms:.2} ms")
        } else {
            format!("{ms:.0} ms")
        };
        canvas.text(
            (BAR_X + len + 8).min(WIDTH - 10 * 8 * SCALE),
            y + 6,
            &value,
            INK,
        );
    }
    canvas.text(
        BAR_X,
        TOP + bars.len() * ROW + 26,
        "median ms, log scale",
        INK,
    );
    let mut encoder = png::Encoder::new(out, WIDTH as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&canvas.pixels)?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn the_chart_is_a_png_with_one_row_per_bar() {
        let mut bytes = Vec::new();
        let bars = [
            ("lastpoint", 3225.0),
            ("single-groupby-1-1-1", 6.4),
            ("tiny", 0.01),
        ];
        write_latency_png(&mut bytes, "mito bench", "4000 hosts", &bars).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width as usize, WIDTH);
        assert_eq!(info.height as usize, TOP + bars.len() * ROW + 50);
    }

    #[test]
    fn bars_grow_with_the_latency_and_stay_inside_the_chart() {
        assert!(bar_len(10.0, 1000.0) < bar_len(100.0, 1000.0));
        assert_eq!(bar_len(1000.0, 1000.0), BAR_MAX);
        assert_eq!(bar_len(1e9, 1000.0), BAR_MAX);
        assert_eq!(bar_len(0.0, 1000.0), 1);
        assert_eq!(bar_len(f64::NAN, 1000.0), 1);
    }
}
