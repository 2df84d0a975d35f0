//! What a target makes legal: fp8 tensor cores need sm_89 and PTX ISA 8.4, fp8 conversions
//! sm_89, `griddepcontrol` sm_90, L1 eviction priorities PTX ISA 7.4; every architecture has a
//! minimum PTX ISA version; lathe emits at most PTX ISA 8.8.

use lathe_kernel::build::{f32_imm, KernelBuilder};
use lathe_kernel::ir::{CacheHint, Kernel, MmaElem, Operand, Space, Ty};
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

#[test]
fn griddepcontrol_needs_sm_90() {
    let mut b = KernelBuilder::new("pdl", 32);
    b.grid_dep_wait();
    b.grid_dep_launch_dependents();
    let k = b.finish();
    lathe_kernel::verify::verify(&k).expect("verifies");
    for sm in [Sm::Sm80, Sm::Sm89] {
        let e = check(&k, &Target::new(sm)).expect_err("before Hopper");
        assert_eq!(e.len(), 2, "{e:?}");
        let want = format!("griddepcontrol needs sm_90 or later, not {}", sm.name());
        assert_eq!((e[0].at.as_str(), e[0].message.as_str()), ("body[0] (griddepcontrol.wait)", want.as_str()));
        assert_eq!(e[1].at, "body[1] (griddepcontrol.launch_dependents)");
        assert_eq!(e[1].message, want);
    }
    for sm in [Sm::Sm90, Sm::Sm90a] {
        check(&k, &Target::new(sm)).unwrap_or_else(|e| panic!("{sm:?}: {e:?}"));
    }
    check(&k, &Target { sm: Sm::Sm90, ptx: (7, 8) }).expect("PTX ISA 7.8 has griddepcontrol");
    let e = check(&k, &Target { sm: Sm::Sm90, ptx: (7, 7) }).expect_err("PTX ISA 7.7");
    assert!(e.iter().any(|e| e.message == "griddepcontrol needs PTX ISA 7.8 or later, not 7.7"), "{e:?}");
}

#[test]
fn fp8_unpack_needs_sm_89() {
    for from in [Ty::E4m3x2, Ty::E5m2x2] {
        let mut b = KernelBuilder::new("unpack", 32);
        let pair = b.mov(Ty::B16, Operand::Imm(0x3c38));
        let _ = b.cvt_unpack(from, pair);
        let k = b.finish();
        lathe_kernel::verify::verify(&k).expect("verifies");
        let e = check(&k, &Target::new(Sm::Sm80)).expect_err("sm_80");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].at, format!("body[1] (cvt.f16x2.{})", from.name()));
        assert_eq!(e[0].message, "fp8 conversions need sm_89 or later, not sm_80");
        for sm in [Sm::Sm89, Sm::Sm90, Sm::Sm90a] {
            check(&k, &Target::new(sm)).unwrap_or_else(|e| panic!("{sm:?}: {e:?}"));
        }
        check(&k, &Target { sm: Sm::Sm89, ptx: (7, 8) }).expect("PTX ISA 7.8 has the unpack");
    }
}

#[test]
fn l1_eviction_priorities_need_ptx_isa_7_4_and_cache_operators_nothing() {
    let mut b = KernelBuilder::new("hints", 32);
    let p = b.mov(Ty::U64, Operand::Imm(0));
    let v = b.ld_hint(Space::Global, Ty::F32, 4, p, 0, true, Some(CacheHint::L1EvictLast));
    b.st_hint(Space::Global, Ty::F32, p, 16, &[v[0].into()], Some(CacheHint::L1NoAllocate));
    let k = b.finish();
    lathe_kernel::verify::verify(&k).expect("verifies");
    let old = Target { sm: Sm::Sm80, ptx: (7, 0) };
    let e = check(&k, &old).expect_err("PTX ISA 7.0");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].at, "body[1] (ld.global.nc.L1::evict_last.v4.f32)");
    assert_eq!(e[1].at, "body[2] (st.global.L1::no_allocate.f32)");
    for e in &e {
        assert_eq!(e.message, "L1 eviction priorities need PTX ISA 7.4 or later, not 7.0");
    }
    let e = check(&k, &Target { sm: Sm::Sm80, ptx: (7, 3) }).expect_err("PTX ISA 7.3");
    assert_eq!(e.len(), 2, "{e:?}");
    check(&k, &Target { sm: Sm::Sm80, ptx: (7, 4) }).expect("PTX ISA 7.4 has them");
    for sm in Sm::ALL {
        check(&k, &Target::new(sm)).unwrap_or_else(|e| panic!("{sm:?}: {e:?}"));
    }
    // The cache operators are as old as the architectures: legal at every target.
    let mut b = KernelBuilder::new("operators", 32);
    let p = b.mov(Ty::U64, Operand::Imm(0));
    for h in [CacheHint::Ca, CacheHint::Cg, CacheHint::Cs, CacheHint::Lu, CacheHint::Cv] {
        b.ld_hint(Space::Global, Ty::F32, 1, p, 0, false, Some(h));
    }
    for h in [CacheHint::Wb, CacheHint::Cg, CacheHint::Cs, CacheHint::Wt] {
        b.st_hint(Space::Global, Ty::F32, p, 0, &[Operand::Imm(0)], Some(h));
    }
    let k = b.finish();
    lathe_kernel::verify::verify(&k).expect("verifies");
    check(&k, &old).expect("cache operators on sm_80 at PTX ISA 7.0");
}
