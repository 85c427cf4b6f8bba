// SPDX-License-Identifier: MIT
//! The rest of the header through the crate: errors with their messages,
//! the handle lifetimes, block / wake-up / UNBLOCK, the interrupt mailbox,
//! stats, trace, user data.  Thread backend unless named kvm_*.
mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;
use vcpureq::*;

const REQ_A: Request = Request::arch::<5>();

#[test]
fn handles_are_send_and_sync_where_the_c_api_allows() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Vm>();
    send_sync::<Vcpu>();
    fn send<T: Send>() {}
    send::<PauseGuard>();
    send::<Error>();
}

#[test]
fn request_numbers() {
    assert_eq!(Request::arch::<0>().number(), 8);
    assert_eq!(Request::arch::<55>().number(), 63);
    assert_eq!(Request::try_arch(55), Some(Request::arch::<55>()));
    assert_eq!(Request::try_arch(56), None);
    assert!(Request::arch::<1>().wait().is_wait());
    assert_eq!(
        Request::arch::<1>().no_wakeup().raw(),
        9 | sys::VCPUREQ_REQUEST_NO_WAKEUP
    );
    let s = VcpuSet::of([0, 3, 64]);
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 64]);
    assert!(s.contains(64) && !s.contains(1));
}

#[test]
fn errors_carry_errno_and_message() {
    // Bad options: nr_vcpus above the thread backend's maximum.
    let e = Vm::builder(Backend::Thread)
        .vcpus(sys::VCPUREQ_THREAD_MAX_VCPUS + 1)
        .create()
        .unwrap_err();
    assert_eq!(e.errno(), errno::EINVAL);
    assert!(!e.message().is_empty(), "no vcpureq_errmsg() text");
    assert!(e.to_string().contains(e.message()));

    let vm = Vm::builder(Backend::Thread).vcpus(1).create().unwrap();
    // The thread backend has no KVM fds, and cannot adopt one.
    assert_eq!(vm.kvm_fd(), None);
    let e = unsafe { vm.adopt_vcpu(9, 0, std::ptr::null_mut(), 0) }.unwrap_err();
    assert_eq!(e.errno(), errno::EINVAL, "{e}");
    // id already used.
    assert_eq!(vm.create_vcpu(0).unwrap_err().errno(), errno::EEXIST);
    let v1 = vm.create_vcpu(7).unwrap();
    assert_eq!((v1.index(), v1.id()), (1, 7));
    assert_eq!(vm.vcpu_by_id(7).unwrap().index(), 1);
    // No guest callback: run() is EINVAL, reported with its message.
    let b = v1.bind().unwrap();
    let e = b.run().unwrap_err();
    assert_eq!(e.errno(), errno::EINVAL);
    assert!(!e.message().is_empty());
    // A second bind of a bound vCPU from this thread: EBUSY.
    assert_eq!(
        vm.vcpu(0).unwrap().bind().unwrap_err().errno(),
        errno::EBUSY
    );
    // Destroy while other handles live: EBUSY, nothing destroyed.
    let e = vm.clone().destroy().unwrap_err();
    assert_eq!(e.errno(), errno::EBUSY);
    b.unbind().map_err(|(_, e)| e).unwrap();
    drop(v1);
    vm.destroy().unwrap();
}

#[test]
fn block_wake_up_and_unblock() {
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    // The hook consumes its condition: runnable once per ready.
    let vm = Vm::builder(Backend::Thread)
        .vcpus(1)
        .runnable(move |_| r.swap(false, AcqRel))
        .create()
        .unwrap();
    let v = vm.vcpu(0).unwrap();
    let steps = Arc::new(AtomicU64::new(0));
    let s = steps.clone();
    let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let tid_set = tid.clone();
    let t = spawn(v.clone(), move |b| {
        tid_set.store(gettid(), Release);
        let first = b.block().unwrap();
        s.store(1, Release);
        let second = b.block().unwrap();
        s.store(2, Release);
        // A NO_WAKEUP request does not end a block: its deadline does.
        let third = b.block_until(Deadline::after(Duration::from_millis(50)));
        (first, second, third.map_err(|e| e.errno()))
    });
    // Asleep, not only blocking: a request made before the sleeper's
    // check would be seen by it (the third block would then end early).
    let tid = || tid.load(Acquire);
    wait_until("blocking", || tid() != 0 && asleep(&v, tid()));
    ready.store(true, Release);
    v.wake_up();
    wait_until("blocking again", || {
        steps.load(Acquire) == 1 && asleep(&v, tid())
    });
    v.request(Request::UNBLOCK).unwrap();
    wait_until("blocking a third time", || {
        steps.load(Acquire) == 2 && asleep(&v, tid())
    });
    v.request(REQ_A.no_wakeup()).unwrap();
    let (first, second, third) = t.join().unwrap();
    assert!(first.runnable(), "{first:?}");
    assert!(second.unblock(), "{second:?}");
    assert_eq!(
        third,
        Err(errno::ETIMEDOUT),
        "a NO_WAKEUP request woke the sleeper"
    );
    assert!(v.stats().blocks >= 3);
}

#[test]
fn interrupt_mailbox() {
    let vm = Vm::builder(Backend::Thread).vcpus(1).create().unwrap();
    let v = vm.vcpu(0).unwrap();
    let t = spawn(v.clone(), move |b| {
        // Sleep until a posted vector wakes it; take what is pending;
        // until both vectors were taken.
        let mut got = 0u32;
        let mut wakes = Vec::new();
        while got != 0b1010 {
            let w = b.block().unwrap();
            wakes.push(w);
            while let Some(vec) = b.take_interrupt() {
                got |= 1 << (vec - 0x20);
            }
        }
        wakes
    });
    wait_until("blocking", || v.is_blocking());
    v.post_interrupt(0x21).unwrap();
    v.post_interrupt(0x23).unwrap();
    let wakes = t.join().unwrap();
    assert!(wakes.iter().all(|w| w.interrupt()), "{wakes:?}");
    let st = v.stats();
    assert_eq!(st.interrupts_posted, 2);
    assert_eq!(st.interrupts_injected, 2, "{st:?}");
}

#[test]
fn stats_dump_and_trace() {
    let Some(m) = Machine::new(
        "api::stats_dump_and_trace",
        Backend::Thread,
        2,
        Prog::Spin,
        |b| {
            b.request_handler(|t| {
                t.check_request(REQ_A);
                Handled::Continue
            })
        },
    ) else {
        return;
    };
    m.vm.trace_start(0).unwrap();
    assert_eq!(m.vm.trace_start(0).unwrap_err().errno(), errno::EBUSY);
    let ts: Vec<_> = (0..2)
        .map(|i| spawn(m.vcpu(i), |b| run_loop(&b, |_| {})))
        .collect();
    m.wait_running(0);
    m.wait_running(1);
    for _ in 0..5 {
        m.vm.make_all_cpus_request(REQ_A.wait()).unwrap();
    }
    m.vcpu(0).kick().unwrap();
    let rs = m.vm.request_stats(REQ_A).unwrap();
    assert_eq!(rs.made, 10);
    assert!(m.vm.kick_stats().is_ok());
    let st = m.vcpu(0).stats();
    assert!(st.requests_made >= 5 && st.entries >= 1, "{st:?}");
    let text = m.vm.dump_stats(DumpFormat::Text).unwrap();
    let json = m.vm.dump_stats(DumpFormat::Json).unwrap();
    assert!(
        text.contains("requests_made") || text.contains("made"),
        "{text}"
    );
    assert!(
        json.trim_start().starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    m.vm.trace_stop().unwrap();
    let c = m.vm.trace_counts().unwrap();
    assert!(c.recorded > 0 && !c.recording, "{c:?}");
    let (trace, n) = m.vm.trace_json().unwrap();
    assert!(n > 0 && trace.contains("traceEvents"), "{n} events");
    m.vm.reset_stats().unwrap();
    assert_eq!(m.vm.request_stats(REQ_A).unwrap().made, 0);
    m.vm.vm_dead().unwrap();
    for t in ts {
        assert_eq!(t.join().unwrap().errno(), errno::EIO);
    }
}

#[test]
fn user_data_and_accessors() {
    let vm = Vm::builder(Backend::Thread)
        .vcpus(2)
        .max_vcpus(4)
        .create()
        .unwrap();
    assert_eq!(vm.nr_vcpus(), 2);
    assert_eq!(vm.max_vcpus(), 4);
    assert!(vm.kick_signal() > 0);
    assert_eq!(vm.backend(), Backend::Thread);
    let v = vm.vcpu(1).unwrap();
    assert!(v.user_data().is_null());
    let mut mine = 42u32;
    v.set_user_data(&mut mine as *mut u32 as *mut _);
    assert_eq!(v.user_data() as *mut u32, &mut mine as *mut u32);
    assert!(v.kvm_run().is_null() && v.kvm_fd().is_none());
    assert_eq!(v.mode(), Mode::OutsideGuest);
    assert!(vm.vcpu(2).is_none());
    assert!(!version_string().is_empty());
}

/// KVM: vcpureq creates the VM; the crate hands its fds out for the VMM's
/// own ioctls; kvm_run is mapped.
#[test]
fn kvm_fds_and_mapping() {
    let Some(m) = Machine::new(
        "api::kvm_fds_and_mapping",
        Backend::Kvm,
        1,
        Prog::Out,
        |b| b,
    ) else {
        return;
    };
    let v = m.vcpu(0);
    assert!(m.vm.kvm_fd().is_some() && v.kvm_fd().is_some());
    assert!(!v.kvm_run().is_null());
    assert_ne!(m.vm.kick_mechanism(), KickMechanism::Default);
    // One run: the guest's out 0x10 is an exit for the VMM, in kvm_run.
    let run = v.kvm_run() as *const kvm::kvm_run_head;
    let t = spawn(v.clone(), move |b| {
        let r = b.run().unwrap();
        let head = unsafe { &*(b.vcpu().kvm_run() as *const kvm::kvm_run_head) };
        (r, head.exit_reason, head.io_port)
    });
    let (r, reason, port) = t.join().unwrap();
    assert_eq!(r, RunResult::Exit);
    assert_eq!((reason, port), (kvm::KVM_EXIT_IO, kvm::PORT_OUT));
    assert_eq!(unsafe { (*run).exit_reason }, kvm::KVM_EXIT_IO);
}

/// The C VM is destroyed and freed with its last handle (Vm clone, Vcpu,
/// pause guard): its closures are dropped then, not before; a WeakVm in
/// a closure does not keep it alive.
#[test]
fn last_handle_frees_the_vm() {
    let token = Arc::new(());
    let tk = token.clone();
    let vm = Vm::builder(Backend::Thread).vcpus(2).create().unwrap();
    let weak = vm.downgrade();
    let vm2 = Vm::builder(Backend::Thread)
        .vcpus(1)
        .request_handler(move |_| {
            let _keep = &tk;
            let _ = weak.upgrade(); // may reach the other VM, never keeps it
            Handled::Continue
        })
        .create()
        .unwrap();
    let w2 = vm2.downgrade();
    let v = vm2.vcpu(0).unwrap();
    let g = vm2.pause(None).unwrap();
    drop(vm2);
    assert!(
        w2.upgrade().is_some(),
        "a Vcpu and a pause guard still hold it"
    );
    drop(g);
    assert_eq!(
        Arc::strong_count(&token),
        2,
        "closures dropped while a Vcpu lives"
    );
    drop(v);
    assert!(w2.upgrade().is_none());
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the last handle did not free the VM's closures"
    );
    assert!(vm.downgrade().upgrade().is_some());
    vm.destroy().unwrap();
}

/// open() (no vCPUs) then vCPUs one by one, on both backends.
#[test]
fn open_then_add_vcpus() {
    let vm = Vm::builder(Backend::Thread).open().unwrap();
    assert_eq!(vm.nr_vcpus(), 0);
    let v = vm.create_vcpu(5).unwrap();
    assert_eq!((v.index(), v.id(), vm.nr_vcpus()), (0, 5, 1));
    drop(v);
    vm.destroy().unwrap();

    if let Err(why) = kvm::open_kvm() {
        skip("api::open_then_add_vcpus (KVM half)", &why);
        return;
    }
    let vm = Vm::builder(Backend::Kvm).open().unwrap();
    assert!(vm.kvm_fd().is_some());
    let v = vm.create_vcpu(3).unwrap();
    assert_eq!((v.index(), v.id()), (0, 3));
    assert!(v.kvm_fd().is_some() && !v.kvm_run().is_null());
    assert_eq!(vm.create_vcpu(3).unwrap_err().errno(), errno::EEXIST);
}

/// The builder's kick mechanism reaches the library: a SIGMASK VM kicks a
/// spinning guest out as well.
#[test]
fn kvm_sigmask_kick() {
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let Some(m) = Machine::new(
        "api::kvm_sigmask_kick",
        Backend::Kvm,
        1,
        Prog::Spin,
        move |b| {
            b.kick(KickMechanism::SigMask).request_handler(move |t| {
                if t.check_request(REQ_A) {
                    h.fetch_add(1, Relaxed);
                }
                Handled::Continue
            })
        },
    ) else {
        return;
    };
    assert_eq!(m.vm.kick_mechanism(), KickMechanism::SigMask);
    let t = spawn(m.vcpu(0), |b| run_loop(&b, |_| {}));
    for k in 1..=10 {
        m.wait_running(0);
        m.vcpu(0).request(REQ_A).unwrap();
        wait_until("handled", || handled.load(Relaxed) == k);
    }
    assert!(m.vcpu(0).stats().kicked_exits >= 1);
    m.vm.vm_dead().unwrap();
    assert_eq!(t.join().unwrap().errno(), errno::EIO);
}

/// An async item that never runs is completed with ECANCELED: by
/// vm_dead() for a vCPU with no bound thread, by the destroy for one
/// still queued; its closure is dropped, not leaked.
#[test]
fn async_work_cancelled() {
    let vm = Vm::builder(Backend::Thread).vcpus(2).create().unwrap();
    let token = Arc::new(());
    let (tx, rx) = std::sync::mpsc::channel();
    let (tk, tx1) = (token.clone(), tx.clone());
    vm.vcpu(0)
        .unwrap()
        .run_on_vcpu_async(
            move |_| {
                let _keep = &tk;
                1
            },
            move |r| tx1.send((0, r.map_err(|e| e.errno()))).unwrap(),
        )
        .unwrap();
    vm.vm_dead().unwrap();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), (0, Err(errno::ECANCELED)));
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the cancelled closure was not dropped"
    );
    // A dead VM queues nothing.
    let e = vm
        .vcpu(1)
        .unwrap()
        .run_on_vcpu_async(|_| 1, |_| {})
        .unwrap_err();
    assert_eq!(e.errno(), errno::EIO);

    let vm = Vm::builder(Backend::Thread).vcpus(1).create().unwrap();
    let tx2 = tx.clone();
    vm.vcpu(0)
        .unwrap()
        .run_on_vcpu_async(
            |_| 1,
            move |r| tx2.send((1, r.map_err(|e| e.errno()))).unwrap(),
        )
        .unwrap();
    vm.destroy().unwrap();
    assert_eq!(rx.recv_timeout(HANG).unwrap(), (1, Err(errno::ECANCELED)));
}
