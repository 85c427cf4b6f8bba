// SPDX-License-Identifier: MIT
//! A tiny KVM VMM in Rust built the way rust-vmm VMMs are, with vcpureq for
//! its requests and pauses (the Rust twin of examples/kvm-vmm.c):
//!
//!  - it opens /dev/kvm, creates the VM fd and its guest memory itself
//!    (raw ioctls, declared by hand: no crates), then wraps the VM fd
//!    (`VmBuilder::open_fd`, as a `kvm_ioctls::VmFd` would be);
//!  - it creates each vCPU fd itself (KVM_CREATE_VCPU), maps its kvm_run
//!    (KVM_GET_VCPU_MMAP_SIZE + mmap, what `VcpuFd::get_kvm_run()` gives),
//!    loads its registers, and has vcpureq adopt both (`Vm::adopt_vcpu`);
//!  - each vCPU thread runs the VMM's own loop: `enter()`, its own
//!    ioctl(KVM_RUN), `exit()`, then its own exit handling (an I/O port);
//!  - real guest code: vCPU 0 loops on `out 0x10` (an I/O exit per loop),
//!    vCPU 1 spins without exits (only a kick gets it out);
//!  - a request with a payload, a pause of every vCPU checked to stop all
//!    guest progress and resumed, and shutdown with VM_DEAD.
//!
//! `cargo run --offline --example vmm`: exits 0 when every step checked
//! out, 77 (SKIP) without /dev/kvm, 1 on failure.  `cargo test` runs it too
//! (a SKIP there is printed and exits 0).
#[path = "../tests/common/kvm.rs"]
mod kvm;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vcpureq::{errno, Backend, Handled, Request, RunResult, Vm};

const NR_VCPUS: u64 = 2;
const REQ_SET_BYTE: Request = Request::arch::<0>();

fn fail(msg: String) -> ! {
    eprintln!("vmm: FAIL: {msg}");
    std::process::exit(1)
}

/// A vCPU as the VMM owns it: its fd and its kvm_run mapping.
struct OwnedVcpu {
    fd: i32,
    run: *mut c_void,
    run_size: usize,
}
unsafe impl Send for OwnedVcpu {}
unsafe impl Sync for OwnedVcpu {}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > Duration::from_secs(60) {
            fail(format!("hang: {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let kvm_fd = match kvm::open_kvm() {
        Ok(fd) => fd,
        Err(why) => {
            println!("SKIP: {why}");
            std::process::exit(if cfg!(test) { 0 } else { 77 });
        }
    };
    // The VM and its memory, before any vCPU.
    let vm_fd = kvm::check(
        unsafe { kvm::ioctl(kvm_fd, kvm::KVM_CREATE_VM, 0) },
        "KVM_CREATE_VM",
    )
    .unwrap_or_else(|e| fail(e));
    let mem = Arc::new(kvm::GuestMem::new(vm_fd).unwrap_or_else(|e| fail(e)));
    let run_size = kvm::check(
        unsafe { kvm::ioctl(kvm_fd, kvm::KVM_GET_VCPU_MMAP_SIZE, 0) },
        "KVM_GET_VCPU_MMAP_SIZE",
    )
    .unwrap_or_else(|e| fail(e)) as usize;

    // The request handler: store the payload byte in the vCPU's data block
    // (its own thread, outside guest mode).
    let payload = Arc::new(AtomicU8::new(0));
    let (p, m) = (payload.clone(), mem.clone());
    let builder = Vm::builder(Backend::Kvm).request_handler(move |t| {
        if t.check_request(REQ_SET_BYTE) {
            let at = kvm::data_gpa(t.id()) as usize + 8;
            // check_request's ordering makes the payload visible here.
            unsafe { m.ptr.add(at).write_volatile(p.load(Relaxed)) };
        }
        Handled::Continue
    });
    // SAFETY: vm_fd stays open until after the VM is destroyed (below).
    let vm = unsafe { builder.open_fd(vm_fd) }.unwrap_or_else(|e| fail(format!("open_fd: {e}")));

    // vCPUs: our fds, our mappings, adopted.
    let mut owned = Vec::new();
    for id in 0..NR_VCPUS {
        let fd = kvm::check(
            unsafe { kvm::ioctl(vm_fd, kvm::KVM_CREATE_VCPU, id) },
            "KVM_CREATE_VCPU",
        )
        .unwrap_or_else(|e| fail(e));
        let run = unsafe {
            kvm::mmap(
                std::ptr::null_mut(),
                run_size,
                kvm::PROT_READ | kvm::PROT_WRITE,
                kvm::MAP_SHARED,
                fd,
                0,
            )
        };
        if run == kvm::MAP_FAILED {
            fail(format!("mmap kvm_run: {}", std::io::Error::last_os_error()));
        }
        let prog = if id == 0 {
            kvm::Prog::Out
        } else {
            kvm::Prog::Spin
        };
        kvm::set_prog(fd, id, prog).unwrap_or_else(|e| fail(e));
        // SAFETY: fd and run stay valid until after the VM is destroyed.
        unsafe { vm.adopt_vcpu(id, fd, run as *mut vcpureq::sys::kvm_run, run_size) }
            .unwrap_or_else(|e| fail(format!("adopt_vcpu {id}: {e}")));
        owned.push(Arc::new(OwnedVcpu { fd, run, run_size }));
    }
    println!(
        "{} vCPUs adopted (our fds and kvm_run mappings), kick mechanism {:?}",
        vm.nr_vcpus(),
        vm.kick_mechanism()
    );

    // The vCPU threads: the VMM's own enter / KVM_RUN / exit loop.
    let io_exits = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (i, o) in owned.iter().enumerate() {
        let vcpu = vm.vcpu(i as u32).unwrap();
        let (o, io) = (o.clone(), io_exits.clone());
        threads.push(std::thread::spawn(move || {
            let b = vcpu.bind().unwrap_or_else(|e| fail(format!("bind: {e}")));
            drop(vcpu);
            let head = o.run as *const kvm::kvm_run_head;
            loop {
                match b.enter() {
                    Ok(RunResult::Enter) => {}
                    Ok(RunResult::Request) => continue, // nothing of ours left
                    Ok(r) => fail(format!("enter: {r:?}")),
                    Err(e) => return e, // EIO: VM_DEAD
                }
                let ret = kvm::kvm_run(o.fd);
                match b.exit(ret) {
                    Ok(RunResult::Again) => continue, // a kick: requests first
                    Ok(RunResult::Exit) => {}
                    Ok(r) => fail(format!("exit: {r:?}")),
                    Err(e) => fail(format!("KVM_RUN: {e}")),
                }
                // Our own exit handling, from our own kvm_run mapping.
                let (reason, port) = unsafe { ((*head).exit_reason, (*head).io_port) };
                match reason {
                    kvm::KVM_EXIT_IO if port == kvm::PORT_OUT => {
                        io.fetch_add(1, Relaxed);
                    }
                    r => fail(format!("vCPU {i}: unexpected exit {r}")),
                }
            }
        }));
    }
    wait_for("both guests running", || {
        mem.iters(0) > 10 && mem.iters(1) > 10
    });

    // 1. A request with a payload to vCPU 1 (spinning: the kick gets it out).
    payload.store(0x5a, Relaxed);
    vm.vcpu(1)
        .unwrap()
        .request(REQ_SET_BYTE)
        .unwrap_or_else(|e| fail(format!("request: {e}")));
    wait_for(
        "payload stored",
        || unsafe { mem.ptr.add(kvm::data_gpa(1) as usize + 8).read_volatile() } == 0x5a,
    );
    println!("request: vCPU 1's handler stored the payload 0x5a");

    // 2. Pause every vCPU: no guest progress and no exits while paused.
    let g = vm
        .pause(None)
        .unwrap_or_else(|e| fail(format!("pause: {e}")));
    let before = [mem.iters(0), mem.iters(1), io_exits.load(Relaxed) as u32];
    std::thread::sleep(Duration::from_millis(200));
    let after = [mem.iters(0), mem.iters(1), io_exits.load(Relaxed) as u32];
    if before != after {
        fail(format!(
            "the guests ran while paused: {before:?} -> {after:?}"
        ));
    }
    for v in vm.vcpus() {
        if !v.parked() {
            fail(format!("vCPU {} not parked", v.index()));
        }
    }
    println!(
        "paused: guest loops {:?} and {} I/O exits, unchanged over 200 ms",
        &before[..2],
        before[2]
    );
    g.resume().unwrap_or_else(|e| fail(format!("resume: {e}")));
    wait_for("guests running again", || {
        mem.iters(0) > before[0] && mem.iters(1) > before[1]
    });
    println!("resumed: guest loops {} and {}", mem.iters(0), mem.iters(1));

    // 3. Shutdown: VM_DEAD ends every loop with EIO.
    vm.vm_dead()
        .unwrap_or_else(|e| fail(format!("vm_dead: {e}")));
    for (i, t) in threads.into_iter().enumerate() {
        let e = t.join().unwrap();
        if e.errno() != errno::EIO {
            fail(format!("vCPU {i}'s loop ended with {e}, not EIO"));
        }
    }
    for v in vm.vcpus() {
        let s = v.stats();
        println!(
            "vCPU {}: {} entries, {} exits, {} kicked, {} signals",
            v.index(),
            s.entries,
            s.exits,
            s.kicked_exits,
            s.signals_sent
        );
    }
    // vcpureq closes and unmaps nothing of ours: we do, after it is gone.
    vm.destroy()
        .unwrap_or_else(|e| fail(format!("destroy: {e}")));
    for o in owned {
        unsafe {
            kvm::munmap(o.run, o.run_size);
            kvm::close(o.fd);
        }
    }
    drop(mem);
    unsafe {
        kvm::close(vm_fd);
        kvm::close(kvm_fd);
    }
    println!("OK");
}
