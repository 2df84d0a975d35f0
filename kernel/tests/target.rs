//! What a target makes legal: fp8 tensor cores need sm_89 and PTX ISA 8.4; every architecture
//! has a minimum PTX ISA version; lathe emits at most PTX ISA 8.8.

use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{Kernel, MmaElem, Operand, Ty};
use lathe_kernel::target::{check, Sm, Target};

fn mma_kernel(elem: MmaElem) -> Kernel {
    let mut b = KernelBuilder::new("one_mma", 32);
    let a = [0; 4].map(|_| b.mov(Ty::B32, Operand::Imm(0)));
    let bb = [0; 2].map(|_| b.mov(Ty::B32, Operand::Imm(0)));
    let _ = b.mma(elem, elem, a, bb, [f32_imm(0.0); 4]);
    b.finish()
}

#[test]
fn fp8_mma_needs_sm_89() {
    let k = mma_kernel(MmaElem::E4m3);
    lathe_kernel::verify::verify(&k).expect("verifies");
    let e = check(&k, &Target::new(Sm::Sm80)).expect_err("sm_80");
    assert!(e[0].to_string().contains("fp8 mma needs sm_89 or later, not sm_80"), "{}", e[0]);
    assert!(e[0].at.contains("mma.sync.aligned.m16n8k32"), "{}", e[0]);
    for sm in [Sm::Sm89, Sm::Sm90, Sm::Sm90a] {
        check(&k, &Target::new(sm)).unwrap_or_else(|e| panic!("{sm:?}: {e:?}"));
    }
    let e = check(&k, &Target { sm: Sm::Sm89, ptx: (8, 0) }).expect_err("ptx 8.0");
    assert!(e[0].message.contains("PTX ISA 8.4 or later"), "{}", e[0]);
    // bf16 tensor cores are legal everywhere lathe compiles for.
    check(&mma_kernel(MmaElem::Bf16), &Target { sm: Sm::Sm80, ptx: (7, 0) }).expect("bf16 on sm_80");
}

#[test]
fn ptx_versions_are_bounded_per_architecture() {
    let k = mma_kernel(MmaElem::Bf16);
    let e = check(&k, &Target { sm: Sm::Sm90a, ptx: (7, 8) }).expect_err("too old");
    assert!(e[0].message.contains("sm_90a needs PTX ISA 8.0 or later"), "{}", e[0]);
    let e = check(&k, &Target { sm: Sm::Sm90, ptx: (9, 0) }).expect_err("too new");
    assert!(e[0].message.contains("above 8.8"), "{}", e[0]);
    assert_eq!(Sm::from_name("sm_89"), Some(Sm::Sm89));
    assert_eq!(Target::HOPPER.to_string(), "sm_90 (PTX ISA 8.8)");
}
