// SPDX-License-Identifier: MIT
//! Raw KVM for the tests and the example VMM: the few libc functions,
//! ioctls and <linux/kvm.h> structs they use, declared by hand (no crates;
//! tests/abi.rs checks every number and layout here against the headers),
//! and tiny real-mode guest programs as bytes.
#![allow(dead_code, non_camel_case_types)]

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void};

extern "C" {
    pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    pub fn ioctl(fd: c_int, req: c_ulong, ...) -> c_int;
    pub fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: c_long,
    ) -> *mut c_void;
    pub fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn __errno_location() -> *mut c_int;
}

pub fn errno() -> i32 {
    unsafe { *__errno_location() }
}

pub const O_RDWR: c_int = 2;
pub const O_CLOEXEC: c_int = 0o2000000;
pub const PROT_READ: c_int = 1;
pub const PROT_WRITE: c_int = 2;
pub const MAP_SHARED: c_int = 1;
pub const MAP_ANONYMOUS: c_int = 0x20;
pub const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

const KVMIO: c_ulong = 0xAE;
const fn io(nr: c_ulong) -> c_ulong {
    (KVMIO << 8) | nr
}
const fn iow(nr: c_ulong, size: usize) -> c_ulong {
    (1 << 30) | ((size as c_ulong) << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: c_ulong, size: usize) -> c_ulong {
    (2 << 30) | ((size as c_ulong) << 16) | (KVMIO << 8) | nr
}

pub const KVM_GET_API_VERSION: c_ulong = io(0x00);
pub const KVM_CREATE_VM: c_ulong = io(0x01);
pub const KVM_GET_VCPU_MMAP_SIZE: c_ulong = io(0x04);
pub const KVM_CREATE_VCPU: c_ulong = io(0x41);
pub const KVM_SET_USER_MEMORY_REGION: c_ulong =
    iow(0x46, std::mem::size_of::<kvm_userspace_memory_region>());
pub const KVM_SET_TSS_ADDR: c_ulong = io(0x47);
pub const KVM_CREATE_IRQCHIP: c_ulong = io(0x60);
pub const KVM_RUN: c_ulong = io(0x80);
pub const KVM_GET_REGS: c_ulong = ior(0x81, std::mem::size_of::<kvm_regs>());
pub const KVM_SET_REGS: c_ulong = iow(0x82, std::mem::size_of::<kvm_regs>());
pub const KVM_GET_SREGS: c_ulong = ior(0x83, std::mem::size_of::<kvm_sregs>());
pub const KVM_SET_SREGS: c_ulong = iow(0x84, std::mem::size_of::<kvm_sregs>());
pub const KVM_SET_MP_STATE: c_ulong = iow(0x99, 4);

pub const KVM_EXIT_IO: u32 = 2;
pub const KVM_EXIT_HLT: u32 = 5;
pub const KVM_EXIT_INTR: u32 = 10;

#[repr(C)]
#[derive(Copy, Clone, Default, Debug)]
pub struct kvm_userspace_memory_region {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Default, Debug)]
pub struct kvm_regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

#[repr(C)]
#[derive(Copy, Clone, Default, Debug)]
pub struct kvm_segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

#[repr(C)]
#[derive(Copy, Clone, Default, Debug)]
pub struct kvm_dtable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

#[repr(C)]
#[derive(Copy, Clone, Default, Debug)]
pub struct kvm_sregs {
    pub cs: kvm_segment,
    pub ds: kvm_segment,
    pub es: kvm_segment,
    pub fs: kvm_segment,
    pub gs: kvm_segment,
    pub ss: kvm_segment,
    pub tr: kvm_segment,
    pub ldt: kvm_segment,
    pub gdt: kvm_dtable,
    pub idt: kvm_dtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    pub interrupt_bitmap: [u64; 4],
}

/// The head of `struct kvm_run` this code reads (the rest is the mapping).
#[repr(C)]
pub struct kvm_run_head {
    pub request_interrupt_window: u8,
    pub immediate_exit: u8,
    pub padding1: [u8; 6],
    pub exit_reason: u32,
    pub ready_for_interrupt_injection: u8,
    pub if_flag: u8,
    pub flags: u16,
    pub cr8: u64,
    pub apic_base: u64,
    /// union: `io` { direction, size, port, count, data_offset }
    pub io_direction: u8,
    pub io_size: u8,
    pub io_port: u16,
    pub io_count: u32,
    pub io_data_offset: u64,
}

/// Guest memory: 1 MiB at guest physical 0; the code at CODE_GPA, one
/// 64-byte data block per vCPU at DATA_GPA(id) whose dword 0 counts the
/// guest's loop iterations.
pub const MEM_SIZE: usize = 0x10_0000;
pub const CODE_GPA: u64 = 0x1000;
pub const fn data_gpa(id: u64) -> u64 {
    0x8_0000 + id * 64
}

/// 16-bit real-mode programs (DS = the vCPU's data block):
///   SPIN: add dword [0],1 / jmp SPIN: only a kick gets it out;
///   OUT:  add dword [0],1 / out 0x10,al / jmp OUT: an I/O exit per loop;
///   HALT: add dword [0],1 / hlt / jmp HALT: an exit per loop (no irqchip).
pub const GUEST_CODE: [u8; 27] = [
    0x66, 0x83, 0x06, 0x00, 0x00, 0x01, 0xeb, 0xf8, // SPIN @0
    0x66, 0x83, 0x06, 0x00, 0x00, 0x01, 0xe6, 0x10, 0xeb, 0xf6, // OUT @8
    0x66, 0x83, 0x06, 0x00, 0x00, 0x01, 0xf4, 0xeb, 0xf7, // HALT @18
];
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Prog {
    Spin = 0,
    Out = 8,
    Halt = 18,
}
pub const PORT_OUT: u16 = 0x10;

/// Open /dev/kvm: Err(reason) if absent or not permitted, or if this is
/// not x86-64 (the guest code is 16-bit x86): the tests SKIP.
pub fn open_kvm() -> Result<c_int, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the KVM tests' guest code is x86 (16-bit real mode)".into());
    }
    let fd = unsafe { open(c"/dev/kvm".as_ptr(), O_RDWR | O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "/dev/kvm: {}",
            std::io::Error::from_raw_os_error(errno())
        ));
    }
    Ok(fd)
}

pub fn check(r: c_int, what: &str) -> Result<c_int, String> {
    if r < 0 {
        Err(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(errno())
        ))
    } else {
        Ok(r)
    }
}

/// Guest memory mapped and registered as slot 0 of `vm_fd`, the guest
/// code copied in.  Unmapped on drop (after the VM is gone: the caller
/// drops it last).
pub struct GuestMem {
    pub ptr: *mut u8,
}
unsafe impl Send for GuestMem {}
unsafe impl Sync for GuestMem {}

impl GuestMem {
    pub fn new(vm_fd: c_int) -> Result<GuestMem, String> {
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == MAP_FAILED {
            return Err(format!(
                "mmap: {}",
                std::io::Error::from_raw_os_error(errno())
            ));
        }
        let mem = GuestMem { ptr: p as *mut u8 };
        unsafe {
            std::ptr::copy_nonoverlapping(
                GUEST_CODE.as_ptr(),
                mem.ptr.add(CODE_GPA as usize),
                GUEST_CODE.len(),
            )
        };
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: mem.ptr as u64,
        };
        check(
            unsafe { ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) },
            "KVM_SET_USER_MEMORY_REGION",
        )?;
        Ok(mem)
    }
    /// The guest's loop counter of vCPU `id` (dword 0 of its data block).
    pub fn iters(&self, id: u64) -> u32 {
        let p =
            unsafe { self.ptr.add(data_gpa(id) as usize) } as *const std::sync::atomic::AtomicU32;
        // The guest writes it with a locked-free add; a relaxed read is a
        // snapshot (no ordering needed: the tests compare snapshots).
        unsafe { (*p).load(std::sync::atomic::Ordering::Relaxed) }
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        unsafe { munmap(self.ptr as *mut c_void, MEM_SIZE) };
    }
}

fn real_mode_seg(s: &mut kvm_segment, base: u64) {
    s.base = base;
    s.selector = (base >> 4) as u16;
    s.limit = 0xffff;
}

/// Point vCPU `fd` (id `id`) at `prog` in real mode, its DS at its data
/// block.
pub fn set_prog(fd: c_int, id: u64, prog: Prog) -> Result<(), String> {
    let mut sregs = kvm_sregs::default();
    check(
        unsafe { ioctl(fd, KVM_GET_SREGS, &mut sregs) },
        "KVM_GET_SREGS",
    )?;
    real_mode_seg(&mut sregs.cs, 0);
    real_mode_seg(&mut sregs.ds, data_gpa(id));
    real_mode_seg(&mut sregs.es, data_gpa(id));
    real_mode_seg(&mut sregs.ss, 0x2_0000 + id * 256);
    check(unsafe { ioctl(fd, KVM_SET_SREGS, &sregs) }, "KVM_SET_SREGS")?;
    let regs = kvm_regs {
        rip: CODE_GPA + prog as u64,
        rsp: 0xfe,
        rflags: 2,
        ..Default::default()
    };
    check(unsafe { ioctl(fd, KVM_SET_REGS, &regs) }, "KVM_SET_REGS")?;
    Ok(())
}

/// `ioctl(fd, KVM_RUN)`: 0 or -errno, as `BoundVcpu::exit()` takes it.
pub fn kvm_run(fd: c_int) -> i32 {
    let r = unsafe { ioctl(fd, KVM_RUN, 0) };
    if r < 0 {
        -errno()
    } else {
        0
    }
}
