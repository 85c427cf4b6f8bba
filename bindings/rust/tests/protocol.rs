// SPDX-License-Identifier: MIT
//! The protocol through the crate, on both backends: every case runs once
//! with real KVM vCPUs executing guest code (`kvm::`; SKIP without
//! /dev/kvm) and once on the thread backend (`thread::`).  Each asserts
//! the property it is named after; waits are bounded only by a hang
//! timeout (common::HANG).
mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use vcpureq::*;

const REQ_PAYLOAD: Request = Request::arch::<0>();
const REQ_TOUCH: Request = Request::arch::<1>();
const REQ_STOP: Request = Request::arch::<2>();

fn assert_eio(e: &Error, who: &str) {
    assert_eq!(
        e.errno(),
        errno::EIO,
        "{who} ended with {e}, not EIO (VM_DEAD)"
    );
}

/// A request's payload, written (relaxed) before the request, is what the
/// handler reads after check_request() returns true.
fn request_with_payload(backend: Backend, name: &str) {
    let payload = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let handled = Arc::new(AtomicU64::new(0));
    let (p, s, h) = (payload.clone(), seen.clone(), handled.clone());
    let Some(m) = Machine::new(name, backend, 1, Prog::Spin, move |b| {
        b.request_handler(move |t| {
            if t.check_request(REQ_PAYLOAD) {
                // Relaxed on purpose: check_request's ordering is what
                // makes the payload visible.
                s.store(p.load(Relaxed), Relaxed);
                h.fetch_add(1, Release);
            }
            Handled::Continue
        })
    }) else {
        return;
    };
    let t = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    m.wait_running(0);
    for k in 1..=50u64 {
        let v = 0x5eed_0000 + k;
        payload.store(v, Relaxed);
        m.vcpu(0).request(REQ_PAYLOAD).unwrap();
        wait_until("request handled", || handled.load(Acquire) >= k);
        assert_eq!(
            seen.load(Relaxed),
            v,
            "request {k}: the handler saw a stale payload"
        );
    }
    let st = m.vm.request_stats(REQ_PAYLOAD).unwrap();
    assert_eq!(st.handled, 50);
    m.vm.vm_dead().unwrap();
    assert_eio(&t.join().unwrap(), "the vCPU loop");
}

/// A vCPU spinning in guest code (no exit of its own) is kicked out by a
/// request: run() returns Request and the bit is there.
fn kick_out_of_spinning_guest(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 1, Prog::Spin, |b| b) else {
        return;
    };
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let t = spawn(m.vcpu(0), move |b| {
        run_loop(&b, |b| {
            if b.check_request(REQ_STOP) {
                g.fetch_add(1, Relaxed);
            }
        })
    });
    let v = m.vcpu(0);
    for k in 1..=20u64 {
        m.wait_running(0);
        wait_until("vCPU in guest mode", || in_guest(&v));
        let kicked = v.stats().kicked_exits;
        let sent = v.request(REQ_STOP).unwrap();
        assert!(
            sent,
            "the vCPU was in guest mode: the kick had to signal it"
        );
        wait_until("run() returned the request", || got.load(Relaxed) == k);
        assert!(v.stats().kicked_exits > kicked, "no kicked exit counted");
    }
    m.vm.vm_dead().unwrap();
    assert_eio(&t.join().unwrap(), "the vCPU loop");
}

/// A broadcast WAIT request returns only after every vCPU left the
/// guest-mode instance it was in (its exit epoch moved).
fn broadcast_wait(backend: Backend, name: &str) {
    let touched: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let tc = touched.clone();
    let Some(m) = Machine::new(name, backend, 3, Prog::Spin, move |b| {
        b.request_handler(move |t| {
            if t.check_request(REQ_TOUCH) {
                tc[t.index() as usize].fetch_add(1, Relaxed);
            }
            Handled::Continue
        })
    }) else {
        return;
    };
    let ts: Vec<_> = (0..3)
        .map(|i| spawn(m.vcpu(i), |b| run_loop(&b, |_| {})))
        .collect();
    for round in 0..10 {
        let mut epochs = Vec::new();
        for i in 0..3 {
            let v = m.vcpu(i);
            wait_until("vCPU in guest mode", || in_guest(&v));
            epochs.push(v.exit_epoch());
        }
        let waited: u64 = (0..3).map(|i| m.vcpu(i).stats().acks_waited).sum();
        m.vm.make_all_cpus_request(REQ_TOUCH.wait()).unwrap();
        for (i, e) in epochs.iter().enumerate() {
            let now = m.vcpu(i as u32).exit_epoch();
            assert!(
                now.wrapping_sub(*e) as i32 > 0,
                "round {round}: WAIT returned with vCPU {i} still in the instance it was in (epoch {e} -> {now})"
            );
        }
        let waited_now: u64 = (0..3).map(|i| m.vcpu(i).stats().acks_waited).sum();
        assert!(
            waited_now >= waited + 3,
            "round {round}: WAIT did not wait for the 3 vCPUs"
        );
    }
    wait_until("every vCPU handled its requests", || {
        touched.iter().all(|c| c.load(Relaxed) >= 1)
    });
    m.vm.vm_dead().unwrap();
    for t in ts {
        assert_eio(&t.join().unwrap(), "a vCPU loop");
    }
}

/// While paused (guard alive) no guest makes progress; dropping the guard
/// or resume() lets them run again.  vCPU 1 runs the VMM-owned loop.
fn pause_resume_no_progress(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 2, Prog::Spin, |b| b) else {
        return;
    };
    let t0 = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    let tick = m.ticker(1);
    let t1 = spawn(m.vcpu(1), move |b| own_loop(&b, tick, |_| {}));
    for round in 0..4 {
        m.wait_running(0);
        m.wait_running(1);
        let g = m.vm.pause(None).unwrap();
        let snap: Vec<u64> = (0..2).map(|i| m.iters(i)).collect();
        for i in 0..2 {
            let v = m.vcpu(i);
            assert!(
                v.paused() && v.parked(),
                "round {round}: vCPU {i} not parked at pause's return"
            );
            assert_eq!(v.mode(), Mode::OutsideGuest);
        }
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..2 {
            assert_eq!(
                m.iters(i),
                snap[i as usize],
                "round {round}: vCPU {i}'s guest ran while paused"
            );
        }
        if round % 2 == 0 {
            drop(g);
        } else {
            g.resume().unwrap();
        }
        for i in 0..2 {
            m.wait_running(i);
            assert!(!m.vcpu(i).paused());
        }
    }
    // A subset: vCPU 1 paused, vCPU 0 runs on.
    let g = m.vm.pause(Some(&VcpuSet::of([1]))).unwrap();
    let snap = m.iters(1);
    m.wait_running(0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(m.iters(1), snap, "vCPU 1's guest ran while paused");
    assert!(!m.vcpu(0).paused());
    g.resume().unwrap();
    m.wait_running(1);
    m.vm.vm_dead().unwrap();
    assert_eio(&t0.join().unwrap(), "vCPU 0's run loop");
    assert_eio(&t1.join().unwrap(), "vCPU 1's own loop");
}

/// run_on_vcpu: the closure runs on the vCPU's thread, borrows the
/// caller's locals, returns its value; the async form reports through its
/// done closure; a panic is caught and returned, and the vCPU goes on.
fn run_on_vcpu_closure(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 1, Prog::Spin, |b| b) else {
        return;
    };
    let tid = Arc::new(Mutex::new(None));
    let tid2 = tid.clone();
    let t = spawn(m.vcpu(0), move |b| {
        *tid2.lock().unwrap() = Some(std::thread::current().id());
        run_loop(&b, |_| {})
    });
    m.wait_running(0);
    let v = m.vcpu(0);
    let local = [1u32, 2, 3];
    let (on, idx, sum) = v
        .run_on_vcpu(|t| {
            (
                std::thread::current().id(),
                t.index(),
                local.iter().sum::<u32>(),
            )
        })
        .unwrap();
    assert_eq!(
        Some(on),
        *tid.lock().unwrap(),
        "the closure did not run on the vCPU thread"
    );
    assert_eq!((idx, sum), (0, 6));

    let (tx, rx) = mpsc::channel();
    let vt = tid.lock().unwrap().unwrap();
    v.run_on_vcpu_async(
        move |_| {
            if std::thread::current().id() == vt {
                42
            } else {
                -1
            }
        },
        move |r| tx.send(r).unwrap(),
    )
    .unwrap();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Ok(42));

    let e = v
        .run_on_vcpu(|_| -> u32 { panic!("boom in run_on_vcpu") })
        .unwrap_err();
    assert!(
        e.is_panic() && e.message().contains("boom in run_on_vcpu"),
        "{e}"
    );
    let (tx, rx) = mpsc::channel();
    v.run_on_vcpu_async(|_| panic!("boom async"), move |r| tx.send(r).unwrap())
        .unwrap();
    let r = rx.recv_timeout(HANG).unwrap();
    assert!(r.as_ref().is_err_and(|e| e.is_panic()), "{r:?}");
    m.wait_running(0);
    assert_eq!(
        v.run_on_vcpu(|_| 7).unwrap(),
        7,
        "the vCPU did not go on after a panic"
    );

    m.vm.vm_dead().unwrap();
    assert_eio(&t.join().unwrap(), "the vCPU loop");
    // Dead VM: nothing queued.
    assert_eq!(v.run_on_vcpu(|_| 1).unwrap_err().errno(), errno::EIO);
}

/// A deadline that passes names the late vCPU: vCPU 1 sits in a lockless
/// walk, so a WAIT request and a pause wait for it; both time out naming
/// vCPU 1 only, and the pause stays in force until waited for and resumed.
fn deadline_names_late_vcpu(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 2, Prog::Spin, |b| b) else {
        return;
    };
    let in_walk = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (iw, rl) = (in_walk.clone(), release.clone());
    let t0 = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    let t1 = spawn(m.vcpu(1), move |mut b| {
        let w = b.walk_lockless().unwrap();
        iw.store(true, Release);
        wait_until("released", || rl.load(Acquire));
        w.end().unwrap();
        run_loop(&b, |_| {})
    });
    m.wait_running(0);
    wait_until("vCPU 1 in its walk", || in_walk.load(Acquire));
    assert_eq!(m.vcpu(1).mode(), Mode::ReadingShadowPageTables);

    // vCPU 1 is late whatever the deadline; vCPU 0, kicked, acknowledges
    // at once, but a loaded machine may not run it before a short
    // deadline: then the deadline doubles (no wall-clock bound on it).
    let mut ms = 100;
    loop {
        let e =
            m.vm.make_vcpus_request_deadline(
                Request::OUTSIDE_GUEST_MODE,
                None,
                Deadline::after(Duration::from_millis(ms)),
            )
            .unwrap_err();
        assert_eq!(e.errno(), errno::ETIMEDOUT, "{e}");
        assert!(e.late_vcpus().contains(&1), "{e}");
        if e.late_vcpus() == [1] {
            break;
        }
        ms *= 2;
    }
    let g = loop {
        let pe =
            m.vm.pause_until(None, Deadline::after(Duration::from_millis(ms)))
                .unwrap_err();
        assert_eq!(pe.error.errno(), errno::ETIMEDOUT, "{:?}", pe.error);
        assert!(pe.error.late_vcpus().contains(&1));
        let g = pe.guard.expect("a timed-out pause stays in force");
        if pe.error.late_vcpus() == [1] {
            break g;
        }
        g.resume().unwrap();
        ms *= 2;
    };
    assert!(m.vcpu(0).parked() && m.vcpu(1).paused());
    release.store(true, Release);
    g.wait(None).unwrap();
    assert!(m.vcpu(1).parked());
    g.resume().unwrap();
    m.wait_running(1);

    m.vm.vm_dead().unwrap();
    assert_eio(&t0.join().unwrap(), "vCPU 0's loop");
    assert_eio(&t1.join().unwrap(), "vCPU 1's loop");
}

/// VM_DEAD ends every loop: run(), the VMM-owned enter/exit loop, and a
/// vCPU in block() (woken at its deadline, it sees DEAD).
fn vm_dead_ends_every_loop(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 3, Prog::Spin, |b| b) else {
        return;
    };
    let t0 = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    let tick = m.ticker(1);
    let t1 = spawn(m.vcpu(1), move |b| own_loop(&b, tick, |_| {}));
    let t2 = spawn(m.vcpu(2), |b| {
        let why = loop {
            match b.block_until(Deadline::after(Duration::from_millis(10))) {
                Ok(w) if w.dead() => break w,
                Ok(_) => {}
                Err(e) if e.errno() == errno::ETIMEDOUT => {}
                Err(e) => panic!("block: {e}"),
            }
        };
        (why, b.run().unwrap_err(), b.enter().unwrap_err())
    });
    m.wait_running(0);
    m.wait_running(1);
    wait_until("vCPU 2 blocking", || m.vcpu(2).is_blocking());
    assert!(!m.vm.is_dead());
    m.vm.vm_dead().unwrap();
    assert!(m.vm.is_dead());
    assert_eio(&t0.join().unwrap(), "run()");
    assert_eio(&t1.join().unwrap(), "the enter/exit loop");
    let (why, run, enter) = t2.join().unwrap();
    assert!(why.dead());
    assert_eio(&run, "run() after block");
    assert_eio(&enter, "enter() after block");
}

/// A panic in the request handler never unwinds into C: run() returns it
/// as an error, and the thread goes on (unbinds, the VM is freed).
fn handler_panic_reported(backend: Backend, name: &str) {
    let Some(m) = Machine::new(name, backend, 1, Prog::Spin, |b| {
        b.request_handler(|t| {
            if t.check_request(REQ_PAYLOAD) {
                panic!("boom in the handler");
            }
            Handled::Continue
        })
    }) else {
        return;
    };
    let t = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    m.wait_running(0);
    m.vcpu(0).request(REQ_PAYLOAD).unwrap();
    let e = t.join().expect("the panic unwound out of run()");
    assert!(
        e.is_panic() && e.message().contains("boom in the handler"),
        "{e}"
    );
    let vm = m.vm.clone();
    drop(m);
    vm.destroy().unwrap();
}

macro_rules! both {
    ($($case:ident),*) => {
        mod kvm {
            $( #[test] fn $case() { super::$case(vcpureq::Backend::Kvm, concat!("kvm::", stringify!($case))) } )*
        }
        mod thread {
            $( #[test] fn $case() { super::$case(vcpureq::Backend::Thread, concat!("thread::", stringify!($case))) } )*
        }
    };
}

both!(
    request_with_payload,
    kick_out_of_spinning_guest,
    broadcast_wait,
    pause_resume_no_progress,
    run_on_vcpu_closure,
    deadline_names_late_vcpu,
    vm_dead_ends_every_loop,
    handler_panic_reported
);
