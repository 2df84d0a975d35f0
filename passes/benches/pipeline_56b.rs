//! Compile time of the default pipeline on the real Nemotron-H-56B config (shape-only import):
//! the L3 budget is under 2 seconds on the 2-core development machine in release mode. A bench,
//! not a test: it prints the times.
//!
//! ```sh
//! cargo bench -p lathe-passes --bench pipeline_56b
//! ```

use std::path::PathBuf;
use std::time::Instant;

use lathe_frontend::import::{import, ImportOptions};
use lathe_ir::DType;
use lathe_passes::PassManager;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs/nemotron-h-56b-base-8k");
    let opts = ImportOptions { compute_dtype: DType::BF16, ..ImportOptions::default() };
    for round in 0..3 {
        let t0 = Instant::now();
        let mut m = match import(&dir, &opts) {
            Ok(i) => i.module,
            Err(e) => {
                eprintln!("pipeline_56b: {e}");
                std::process::exit(2);
            }
        };
        let import_s = t0.elapsed().as_secs_f64();
        let mut pm = match PassManager::parse("default") {
            Ok(pm) => pm,
            Err(e) => {
                eprintln!("pipeline_56b: {e}");
                std::process::exit(2);
            }
        };
        pm.instrumentation.verify_each = false;
        let t1 = Instant::now();
        let report = match pm.run(&mut m, &mut std::io::sink()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pipeline_56b: {e}");
                std::process::exit(1);
            }
        };
        let pipeline_s = t1.elapsed().as_secs_f64();
        println!(
            "round {round}: import {import_s:.3} s, default pipeline {pipeline_s:.3} s, total {:.3} s",
            import_s + pipeline_s
        );
        if round == 2 {
            print!("{}", report.timing_text());
        }
    }
}
