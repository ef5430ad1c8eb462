//! An IoT workload in the model of TSBS's "iot" use case: trucks reporting `readings`
//! (position, elevation, velocity, fuel consumption) and `diagnostics` (fuel state, load,
//! status, ignition), one row of each per truck every 10 s from 2016-01-01T00:00:00Z, as
//! line protocol. Unlike the cpu data it has
//!
//! - full-precision floats (position, fuel), an integer (`elevation`, `current_load`), a
//!   one-decimal float (`velocity`), a string (`status`) and a bool (`ignition`) field;
//! - sparse rows: each field is missing from a row with probability 1/10 (a position's
//!   latitude and longitude together), and a row always keeps at least one field;
//! - late rows: about 3 in 100 rows reach the file one minute (6 steps) after their time.
//!
//! Seeded and deterministic. Tags, in primary-key order: `name`, `fleet`, `driver`,
//! `model`, `device_version`.

use std::collections::VecDeque;
use std::fmt::Write;

use crate::{INTERVAL_SECS, Rng, START_NS};

/// Tag names, in primary-key order.
pub const TAGS: [&str; 5] = ["name", "fleet", "driver", "model", "device_version"];
/// The fleets a truck belongs to (the `fleet` tag).
pub const FLEETS: [&str; 5] = ["East", "West", "North", "South", "Central"];
const DRIVERS: [&str; 12] = [
    "Albert", "Derek", "Trish", "Rodney", "Seth", "Andy", "Zelda", "Ida", "Kerry", "Lance", "Mia",
    "Otto",
];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];
const DEVICE_VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];
/// Steps a late row arrives after its time (one minute).
pub const LATE_STEPS: u64 = 6;

/// One truck's state between steps.
#[derive(Debug, Clone)]
struct Truck {
    tags: String,
    latitude: f64,
    longitude: f64,
    elevation: i64,
    velocity: f64,
    fuel: f64,
    load: i64,
    moving: bool,
}

/// Generates the workload's line protocol one step (every truck's two rows) at a time.
#[derive(Debug)]
pub struct IotGenerator {
    trucks: Vec<Truck>,
    rng: Rng,
    step: u64,
    /// Rows held back to arrive late: (the step they are written at, the line).
    late: VecDeque<(u64, String)>,
}

impl IotGenerator {
    /// `trucks` trucks, seeded.
    pub fn new(trucks: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x0069_6f74);
        let trucks = (0..trucks)
            .map(|i| {
                let tags = format!(
                    "name=truck_{i},fleet={},driver={},model={},device_version={}",
                    rng.pick(&FLEETS),
                    rng.pick(&DRIVERS),
                    rng.pick(&MODELS),
                    rng.pick(&DEVICE_VERSIONS)
                );
                Truck {
                    tags,
                    latitude: rng.unit() * 180.0 - 90.0,
                    longitude: rng.unit() * 360.0 - 180.0,
                    elevation: i64::try_from(rng.below(3000)).unwrap_or(0),
                    velocity: 0.0,
                    fuel: 0.2 + rng.unit() * 0.8,
                    load: i64::try_from(rng.below(5000)).unwrap_or(0),
                    moving: rng.below(2) == 0,
                }
            })
            .collect();
        Self {
            trucks,
            rng,
            step: 0,
            late: VecDeque::new(),
        }
    }

    /// Appends the next step's rows, and the late rows due at it, to `out`; returns how many
    /// rows it appended.
    pub fn next_step(&mut self, out: &mut String) -> usize {
        let step = self.step;
        self.step += 1;
        let ts = START_NS + i64::try_from(step).unwrap_or(0) * INTERVAL_SECS * 1_000_000_000;
        let mut rows = 0;
        let mut line = String::new();
        for t in 0..self.trucks.len() {
            self.advance(t);
            for measurement in 0..2 {
                line.clear();
                self.row(t, measurement, ts, &mut line);
                if self.rng.below(100) < 3 {
                    self.late.push_back((step + LATE_STEPS, line.clone()));
                } else {
                    out.push_str(&line);
                    rows += 1;
                }
            }
        }
        while self.late.front().is_some_and(|(due, _)| *due <= step) {
            if let Some((_, line)) = self.late.pop_front() {
                out.push_str(&line);
                rows += 1;
            }
        }
        rows
    }

    /// Appends the late rows not yet written (after the last step); returns how many.
    pub fn finish(&mut self, out: &mut String) -> usize {
        let n = self.late.len();
        for (_, line) in self.late.drain(..) {
            out.push_str(&line);
        }
        n
    }

    /// Moves truck `t` on by one step.
    fn advance(&mut self, t: usize) {
        let switch = self.rng.below(100) == 0;
        let (g1, g2, g3) = (self.rng.gauss(), self.rng.gauss(), self.rng.gauss());
        let (u1, u2) = (self.rng.unit(), self.rng.unit());
        let Some(k) = self.trucks.get_mut(t) else {
            return;
        };
        if switch {
            k.moving = !k.moving;
        }
        if k.moving {
            k.velocity = (k.velocity + g1 * 3.0).clamp(15.0, 100.0);
            k.latitude = (k.latitude + g2 * 1e-3).clamp(-90.0, 90.0);
            k.longitude = (k.longitude + g3 * 1e-3).clamp(-180.0, 180.0);
            k.fuel -= u1 * 1e-3;
        } else {
            k.velocity = (u1 * 0.8 * 10.0).round() / 10.0;
        }
        // A low tank is refilled, at a random step.
        if k.fuel < 0.05 && u2 < 0.02 {
            k.fuel = 1.0;
        }
        k.fuel = k.fuel.max(0.0);
        k.elevation =
            (k.elevation + i64::try_from(self.rng.below(11)).unwrap_or(5) - 5).clamp(0, 5000);
        k.load = (k.load + i64::try_from(self.rng.below(21)).unwrap_or(10) - 10).clamp(0, 5000);
    }

    /// Truck `t`'s row of `readings` (`measurement` 0) or `diagnostics` (1) at `ts`, with
    /// fields missing at random.
    fn row(&mut self, t: usize, measurement: usize, ts: i64, out: &mut String) {
        let Some(k) = self.trucks.get(t) else {
            return;
        };
        let rng = &mut self.rng;
        let mut keep = || rng.below(10) != 0;
        let mut fields: Vec<String> = Vec::with_capacity(5);
        let (measurement, last) = if measurement == 0 {
            if keep() {
                fields.push(format!("latitude={}", k.latitude));
                fields.push(format!("longitude={}", k.longitude));
            }
            if keep() {
                fields.push(format!("elevation={}i", k.elevation));
            }
            if keep() {
                let consumption = k.velocity * 0.25 + 5.0 * k.fuel;
                fields.push(format!("fuel_consumption={consumption}"));
            }
            ("readings", (keep(), format!("velocity={:.1}", k.velocity)))
        } else {
            if keep() {
                fields.push(format!("fuel_state={}", k.fuel));
            }
            if keep() {
                fields.push(format!("current_load={}i", k.load));
            }
            if keep() {
                let status = if k.moving { "moving" } else { "stationary" };
                fields.push(format!("status=\"{status}\""));
            }
            let ignition = if k.moving { 't' } else { 'f' };
            ("diagnostics", (keep(), format!("ignition={ignition}")))
        };
        // The last field is written when every other one is missing.
        let (present, text) = last;
        if present || fields.is_empty() {
            fields.push(text);
        }
        let _ = writeln!(out, "{measurement},{} {} {ts}", k.tags, fields.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(trucks: usize, steps: usize) -> Vec<String> {
        let mut g = IotGenerator::new(trucks, 9);
        let mut text = String::new();
        let mut n = 0;
        for _ in 0..steps {
            n += g.next_step(&mut text);
        }
        n += g.finish(&mut text);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(lines.len(), n);
        lines
    }

    #[test]
    fn every_row_once_some_late_some_sparse_deterministic() {
        let (trucks, steps) = (50, 60);
        let all = lines(trucks, steps);
        assert_eq!(all, lines(trucks, steps));
        assert_eq!(all.len(), trucks * steps * 2);
        let mut keys: Vec<(String, i64)> = Vec::new();
        let (mut late, mut sparse, mut last_ts) = (0, 0, i64::MIN);
        for line in &all {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "{line}");
            let ts: i64 = parts[2].parse().unwrap();
            assert_eq!((ts - START_NS) % (INTERVAL_SECS * 1_000_000_000), 0);
            if ts < last_ts {
                late += 1;
            }
            last_ts = last_ts.max(ts);
            let fields = parts[1].split(',').count();
            let full = if parts[0].starts_with("readings") {
                5
            } else {
                4
            };
            assert!((1..=full).contains(&fields), "{line}");
            if fields < full {
                sparse += 1;
            }
            if parts[1].contains("latitude") {
                assert!(parts[1].contains("longitude"), "{line}");
            }
            keys.push((parts[0].to_string(), ts));
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all.len(), "a row was written twice");
        // About 3% late and about 1 - 0.9^4 of rows missing a field.
        assert!((all.len() / 100..all.len() / 15).contains(&late), "{late}");
        assert!((all.len() / 5..all.len() / 2).contains(&sparse), "{sparse}");
    }
}
