// SPDX-License-Identifier: MIT
//! The crate's cost against the C API called directly, in the same run,
//! on real KVM vCPUs (the figures of bench/micro.c, docs/performance.md):
//!
//!  - kick latency: a vCPU spinning in the guest inside `run()`; the
//!    requester makes a request and kicks; the time until the request
//!    handler runs on the vCPU thread.  Two VMs alike but for the layer:
//!    one built with the crate (closure handler, `Vcpu::make_request` +
//!    `Vcpu::kick`, `BoundVcpu::run`), one with the raw `sys` calls (a
//!    plain `extern "C"` handler, `vcpureq_vcpu_run()`).  Only one spins at
//!    a time (the other paused); batches of 50 alternate (order
//!    alternating); the figure is the median of the per-pair ratios of
//!    the batches' medians.
//!  - guest-entry overhead: a guest with one I/O exit per loop, driven
//!    200 exits per batch by `BoundVcpu::run()` and by
//!    `sys::vcpureq_vcpu_run()`, same vCPU, same thread, batches
//!    interleaved (order alternating); the figure is the median of the
//!    per-pair ratios.
//!
//! `cargo run --release --offline --example bench [-- SAMPLES]`; prints
//! one row per figure; exits 77 without /dev/kvm.
#[path = "../tests/common/kvm.rs"]
mod kvm;

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use vcpureq::{sys, Backend, Handled, Request, RunResult, Vm};

const REQ: Request = Request::arch::<0>();

static T0: OnceLock<Instant> = OnceLock::new();
fn now_ns() -> u64 {
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// When the handler of each VM last ran (ns since T0); 0 = not yet.
static SEEN_CRATE: AtomicU64 = AtomicU64::new(0);
static SEEN_RAW: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn raw_handler(v: *mut sys::vcpureq_vcpu, _opaque: *mut c_void) -> c_int {
    if unsafe { sys::vcpureq_check_request(REQ.raw(), v) } > 0 {
        SEEN_RAW.store(now_ns(), Release);
    }
    0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn wait(mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(60), "bench: hang");
        std::hint::spin_loop();
    }
}

/// A 1-vCPU KVM VM running `prog`, built with the crate: closure handler.
fn setup_crate(prog: kvm::Prog) -> (Vm, kvm::GuestMem) {
    let vm = Vm::builder(Backend::Kvm)
        .vcpus(1)
        .request_handler(|t| {
            if t.check_request(REQ) {
                SEEN_CRATE.store(now_ns(), Release);
            }
            Handled::Continue
        })
        .create()
        .expect("create");
    let mem = kvm::GuestMem::new(vm.kvm_fd().unwrap()).unwrap();
    kvm::set_prog(vm.vcpu(0).unwrap().kvm_fd().unwrap(), 0, prog).unwrap();
    (vm, mem)
}

/// The same VM through the C API alone: vcpureq_vm_create() with a plain
/// C function pointer as handler.  Left to the process's exit.
fn setup_raw(prog: kvm::Prog) -> (*mut sys::vcpureq_vm, kvm::GuestMem) {
    let mut o = sys::vcpureq_vm_opts {
        nr_vcpus: 1,
        ..Default::default()
    };
    o.handle_requests = Some(raw_handler);
    let mut p = std::ptr::null_mut();
    assert_eq!(
        unsafe { sys::vcpureq_vm_create(&o, &mut p) },
        0,
        "vcpureq_vm_create"
    );
    let mem = kvm::GuestMem::new(unsafe { sys::vcpureq_vm_kvm_fd(p) }).unwrap();
    let v = unsafe { sys::vcpureq_vm_vcpu(p, 0) };
    kvm::set_prog(unsafe { sys::vcpureq_vcpu_kvm_fd(v) }, 0, prog).unwrap();
    (p, mem)
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    if let Err(why) = kvm::open_kvm() {
        println!("SKIP: {why}");
        std::process::exit(77);
    }
    now_ns();

    // ---- kick latency ----
    let (vm_c, _mem_c) = setup_crate(kvm::Prog::Spin);
    let (raw_vm, _mem_r) = setup_raw(kvm::Prog::Spin);
    let raw_v = unsafe { sys::vcpureq_vm_vcpu(raw_vm, 0) } as usize;
    let vc = vm_c.vcpu(0).unwrap();
    let tc = {
        let v = vc.clone();
        std::thread::spawn(move || {
            let b = v.bind().unwrap();
            while b.run().is_ok() {}
        })
    };
    let tr = std::thread::spawn(move || {
        let v = raw_v as *mut sys::vcpureq_vcpu;
        assert_eq!(unsafe { sys::vcpureq_vcpu_bind(v) }, 0);
        while unsafe { sys::vcpureq_vcpu_run(v) } >= 0 {}
        unsafe { sys::vcpureq_vcpu_unbind(v) };
    });
    let raw_pause = |on: bool| unsafe {
        if on {
            assert_eq!(
                sys::vcpureq_pause(raw_vm, std::ptr::null(), 0, std::ptr::null()),
                0
            );
        } else {
            assert_eq!(sys::vcpureq_resume(raw_vm, std::ptr::null(), 0), 0);
        }
    };
    let rv = raw_v as *mut sys::vcpureq_vcpu;
    // In guest mode past the entry's final request check (mode, then
    // entries > exits: tests/harness.c, h_in_guest()): a kick made in the
    // window before the check would be seen there without a signal and
    // time less than a kick.
    let in_guest = |v: *mut sys::vcpureq_vcpu| unsafe {
        if sys::vcpureq_vcpu_mode(v) != sys::VCPUREQ_IN_GUEST_MODE {
            return false;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let mut s = sys::vcpureq_stats::default();
        sys::vcpureq_vcpu_stats(v, &mut s, std::mem::size_of::<sys::vcpureq_stats>());
        s.entries > s.exits
    };
    let (mut lat_c, mut lat_r) = (Vec::new(), Vec::new());
    let mut kick_ratios = Vec::new();
    let batch = 50;
    raw_pause(true);
    let mut raw_paused = true;
    let mut pc = None;
    for round in 0..samples.div_ceil(batch) {
        for crate_turn in [round % 2 == 0, round % 2 != 0] {
            // Only the measured VM spins: the other is paused.
            if crate_turn {
                if !raw_paused {
                    raw_pause(true);
                    raw_paused = true;
                }
                drop(pc.take());
            } else {
                if pc.is_none() {
                    pc = Some(vm_c.pause(None).unwrap());
                }
                if raw_paused {
                    raw_pause(false);
                    raw_paused = false;
                }
            }
            if crate_turn {
                for _ in 0..batch {
                    wait(|| in_guest(vc.as_raw()));
                    SEEN_CRATE.store(0, Relaxed);
                    let t = now_ns();
                    vc.make_request(REQ).unwrap();
                    vc.kick().unwrap();
                    wait(|| SEEN_CRATE.load(Acquire) != 0);
                    lat_c.push((SEEN_CRATE.load(Relaxed) - t) as f64);
                }
            } else {
                for _ in 0..batch {
                    wait(|| in_guest(rv));
                    SEEN_RAW.store(0, Relaxed);
                    let t = now_ns();
                    unsafe {
                        sys::vcpureq_make_request(REQ.raw(), rv);
                        sys::vcpureq_vcpu_kick(rv);
                    }
                    wait(|| SEEN_RAW.load(Acquire) != 0);
                    lat_r.push((SEEN_RAW.load(Relaxed) - t) as f64);
                }
            }
        }
        // This round's pair: the median of each batch of it.
        let n = lat_c.len();
        let mc = median(&mut lat_c[n - batch..].to_vec());
        let mr = median(&mut lat_r[n - batch..].to_vec());
        kick_ratios.push(mc / mr);
    }
    drop(pc);
    if raw_paused {
        raw_pause(false);
    }
    vm_c.vm_dead().unwrap();
    unsafe { sys::vcpureq_vm_dead(raw_vm) };
    tc.join().unwrap();
    tr.join().unwrap();
    let (kc, kr) = (median(&mut lat_c) / 1e3, median(&mut lat_r) / 1e3);
    println!(
        "kick latency p50 ({} samples each, {} batch pairs): crate {kc:.2} us, C API {kr:.2} us: {:.3}x (median of per-pair ratios)",
        lat_c.len(),
        kick_ratios.len(),
        median(&mut kick_ratios)
    );

    // ---- guest-entry overhead ----
    let (vm, _mem) = setup_crate(kvm::Prog::Out);
    let v = vm.vcpu(0).unwrap();
    let per_batch = 200;
    let pairs = (samples / 10).max(20);
    let (ratios, c_ns, r_ns) = std::thread::spawn(move || {
        let b = v.bind().unwrap();
        let raw = b.as_raw();
        let (mut ratios, mut cs, mut rs) = (Vec::new(), Vec::new(), Vec::new());
        let crate_batch = || {
            let t = Instant::now();
            for _ in 0..per_batch {
                assert_eq!(b.run().unwrap(), RunResult::Exit);
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        };
        let raw_batch = || {
            let t = Instant::now();
            for _ in 0..per_batch {
                assert_eq!(unsafe { sys::vcpureq_vcpu_run(raw) }, sys::VCPUREQ_RUN_EXIT);
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        };
        crate_batch();
        raw_batch();
        for i in 0..pairs {
            let (c, r) = if i % 2 == 0 {
                let c = crate_batch();
                (c, raw_batch())
            } else {
                let r = raw_batch();
                (crate_batch(), r)
            };
            ratios.push(c / r);
            cs.push(c);
            rs.push(r);
        }
        (ratios, median(&mut cs), median(&mut rs))
    })
    .join()
    .unwrap();
    let mut ratios = ratios;
    let ratio = median(&mut ratios);
    println!(
        "guest-entry p50 per I/O exit ({pairs} batch pairs x {per_batch}): crate {:.2} us, C API {:.2} us: {:+.2}% (median of per-pair ratios)",
        c_ns / 1e3,
        r_ns / 1e3,
        (ratio - 1.0) * 100.0
    );
}
