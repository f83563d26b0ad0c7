//! How fast this board's interpreter is: fuel per millisecond. The hub turns
//! the call budget (1.5 s) into a fuel ceiling with it, so a skill gets the
//! same wall-clock budget on a Pi Zero 2 as on a Pi 5, and is stopped by fuel
//! (deterministically) before the wall clock has to step in.

use std::time::{Duration, Instant};

use wasmi::{Engine, Linker, Module, Store};

/// `(func (export "spin") (param i64) ...)`: counts up to its argument. A
/// tight loop of the plainest instructions, built in so calibration needs
/// no file.
const SPIN_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x01, 0x7e, 0x00, 0x03,
    0x02, 0x01, 0x00, 0x07, 0x08, 0x01, 0x04, 0x73, 0x70, 0x69, 0x6e, 0x00, 0x00, 0x0a, 0x17, 0x01,
    0x15, 0x01, 0x01, 0x7e, 0x03, 0x40, 0x20, 0x01, 0x42, 0x01, 0x7c, 0x21, 0x01, 0x20, 0x01, 0x20,
    0x00, 0x54, 0x0d, 0x00, 0x0b, 0x0b,
];

/// The measurement: fuel burnt per millisecond of wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub fuel_per_ms: u64,
    /// How long the measurement took.
    pub took: Duration,
}

/// Burns `fuel` in the spin loop and returns how long it took.
fn burn(engine: &Engine, module: &Module, fuel: u64) -> Duration {
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate_and_start(&mut store, module)
        .expect("the spin module instantiates");
    let spin = instance
        .get_typed_func::<i64, ()>(&store, "spin")
        .expect("spin is exported");
    store.set_fuel(fuel).expect("fuel metering is on");
    let started = Instant::now();
    // Runs until the fuel is gone: an out-of-fuel trap is the expected end.
    let _ = spin.call(&mut store, i64::MAX);
    started.elapsed()
}

/// Measures this machine for about `budget` of wall time (a few ms at hub
/// start; longer for `hark calibrate`). Takes the fastest of several rounds,
/// so a busy moment does not make the board look slow.
pub fn measure(engine: &Engine, budget: Duration) -> Calibration {
    let started = Instant::now();
    let module = Module::new(engine, SPIN_WASM).expect("the spin module compiles");
    // Find a round size of ~1/8 of the budget, then run rounds until it is used.
    let mut fuel = 100_000u64;
    let round = budget / 8;
    loop {
        let took = burn(engine, &module, fuel);
        if took >= round / 2 || fuel >= 1 << 40 {
            break;
        }
        fuel *= 2;
    }
    let mut best = f64::MAX;
    loop {
        let took = burn(engine, &module, fuel).as_secs_f64() * 1000.0;
        best = best.min(took / fuel as f64);
        if started.elapsed() >= budget {
            break;
        }
    }
    let fuel_per_ms = (1.0 / best.max(1e-12)).clamp(1.0, 1e12) as u64;
    Calibration {
        fuel_per_ms,
        took: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_gives_a_plausible_figure_in_its_budget() {
        let c = measure(&super::super::engine(), Duration::from_millis(20));
        assert!(c.fuel_per_ms > 1_000, "{c:?}");
        assert!(c.took < Duration::from_secs(2), "{c:?}");
    }
}
