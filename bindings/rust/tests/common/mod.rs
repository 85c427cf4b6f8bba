// SPDX-License-Identifier: MIT
//! The tests' machine: a VM on either backend whose vCPUs run real guest
//! code (KVM: the real-mode programs of kvm.rs in guest memory) or the
//! thread backend's guest closure doing the same (counting loop
//! iterations), vCPU threads, and waits bounded only by a generous hang
//! timeout.
#![allow(dead_code)]
pub mod kvm;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vcpureq::{Backend, BoundVcpu, Error, RunResult, Vcpu, Vm, VmBuilder, GUEST_KICKED};

pub use kvm::Prog;

/// A wait longer than this is a hang (never a performance bound).
pub const HANG: Duration = Duration::from_secs(60);

/// Say SKIP where it is seen: straight to the process's stderr, which the
/// test harness does not capture (its capture takes the print macros only).
pub fn skip(test: &str, why: &str) {
    // One write: a whole line among the harness's own.
    let line = format!("SKIP: {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Poll `cond` every millisecond; panic naming `what` after HANG.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > HANG {
            panic!("hang: {what} not reached in {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub struct Machine {
    pub vm: Vm,
    pub backend: Backend,
    /// Thread backend: the guest closure's loop counters, per index.
    tb_iters: Arc<Vec<AtomicU64>>,
    /// KVM: guest memory (dropped after vm: declared after it).
    mem: Option<kvm::GuestMem>,
}

impl Machine {
    /// `n` vCPUs running `prog`; `f` adds options (handler...).  None if
    /// the backend is KVM and /dev/kvm is missing (SKIP said).
    pub fn new(
        test: &str,
        backend: Backend,
        n: u32,
        prog: Prog,
        f: impl FnOnce(VmBuilder) -> VmBuilder,
    ) -> Option<Machine> {
        let tb_iters: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let mut b = Vm::builder(backend).vcpus(n);
        if backend == Backend::Kvm {
            match kvm::open_kvm() {
                Ok(fd) => unsafe {
                    kvm::close(fd);
                },
                Err(why) => {
                    skip(test, &why);
                    return None;
                }
            }
        } else {
            let iters = tb_iters.clone();
            // The thread backend's guest: the same programs as closures.
            b = b.guest(move |t| {
                let c = &iters[t.index() as usize];
                match prog {
                    Prog::Spin => loop {
                        c.fetch_add(1, Ordering::Relaxed);
                        if t.guest_kicked() {
                            return GUEST_KICKED;
                        }
                        std::hint::spin_loop();
                    },
                    Prog::Out | Prog::Halt => {
                        c.fetch_add(1, Ordering::Relaxed);
                        0
                    }
                }
            });
        }
        let vm = f(b)
            .create()
            .unwrap_or_else(|e| panic!("{test}: Vm create: {e}"));
        let mem = if backend == Backend::Kvm {
            let mem = kvm::GuestMem::new(vm.kvm_fd().expect("a KVM VM fd")).unwrap();
            for v in vm.vcpus() {
                kvm::set_prog(v.kvm_fd().unwrap(), v.id(), prog).unwrap();
            }
            Some(mem)
        } else {
            None
        };
        Some(Machine {
            vm,
            backend,
            tb_iters,
            mem,
        })
    }

    /// The guest's progress: loop iterations of vCPU `i`.
    pub fn iters(&self, i: u32) -> u64 {
        match &self.mem {
            Some(m) => m.iters(i as u64) as u64,
            None => self.tb_iters[i as usize].load(Ordering::Relaxed),
        }
    }

    /// For own_loop on the thread backend: count a guest loop of vCPU i.
    pub fn ticker(&self, i: u32) -> impl Fn() + Send + 'static {
        let it = self.tb_iters.clone();
        move || {
            it[i as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn vcpu(&self, i: u32) -> Vcpu {
        self.vm.vcpu(i).expect("vcpu")
    }

    /// Wait until vCPU `i`'s guest is running (its counter moves).
    pub fn wait_running(&self, i: u32) {
        let c0 = self.iters(i);
        wait_until(&format!("vCPU {i} guest running"), || self.iters(i) > c0);
    }
}

/// In guest mode and past the entry's final request check: a request made
/// now needs a kick.  The mode alone is not that: it is published before
/// the check, and a request made in between is seen by the check, without
/// a kick (the C harness's h_in_guest() says why the order of the reads,
/// mode then the counters, makes `entries > exits` mean the instance has
/// passed its check).
pub fn in_guest(v: &Vcpu) -> bool {
    if v.mode() != vcpureq::Mode::InGuest {
        return false;
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    let s = v.stats();
    s.entries > s.exits
}

/// The calling thread's kernel thread id (from /proc/thread-self).
pub fn gettid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// Asleep in `block()`, past its check of the wake conditions: the vCPU
/// says it is blocking and its thread `tid` is in the futex wait (the C
/// harness's h_sleeping() says why the flag alone is not that: a request
/// made between the flag and the check is seen by the check).  With no
/// thread id or no /proc syscall file, the flag alone.
pub fn asleep(v: &Vcpu, tid: i32) -> bool {
    const SYS_FUTEX: i64 = if cfg!(target_arch = "aarch64") {
        98
    } else {
        202
    };
    if !v.is_blocking() {
        return false;
    }
    if tid <= 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) {
        Ok(s) => {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok())
                == Some(SYS_FUTEX)
        }
        Err(_) => true,
    }
}

/// A vCPU thread: binds, then runs `body` with the guard.
pub fn spawn<R: Send + 'static>(
    vcpu: Vcpu,
    body: impl FnOnce(BoundVcpu) -> R + Send + 'static,
) -> JoinHandle<R> {
    std::thread::spawn(move || {
        let b = vcpu.bind().unwrap_or_else(|e| panic!("bind: {e}"));
        body(b)
    })
}

/// The plain run loop: `on_request` for RunResult::Request, go on over
/// exits, until an error (EIO at VM_DEAD), which it returns.
pub fn run_loop(b: &BoundVcpu, mut on_request: impl FnMut(&BoundVcpu)) -> Error {
    loop {
        match b.run() {
            Ok(RunResult::Request) => on_request(b),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

/// The VMM-owned loop: enter, the VMM's own guest entry (KVM: its own
/// ioctl(KVM_RUN) on the vCPU fd; thread backend: its own guest code, which
/// polls guest_kicked()), exit.
pub fn own_loop(b: &BoundVcpu, tick: impl Fn(), mut on_request: impl FnMut(&BoundVcpu)) -> Error {
    let fd = b.vcpu().kvm_fd();
    loop {
        let r = b.enter_guest(|| match fd {
            Some(fd) => kvm::kvm_run(fd),
            None => {
                while !b.guest_kicked() {
                    tick();
                    std::hint::spin_loop();
                }
                GUEST_KICKED
            }
        });
        match r {
            Ok(RunResult::Request) => on_request(b),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}
