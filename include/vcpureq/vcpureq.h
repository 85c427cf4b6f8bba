/* SPDX-License-Identifier: MIT */
/*
 * vcpureq: the KVM vCPU request protocol for user-space VMMs.
 *
 * Any thread asks a vCPU thread to do something by making a *request* (a bit
 * in the vCPU's request bitmap) and *kicking* the vCPU.  The kick wakes the
 * vCPU if it sleeps in vcpureq_vcpu_block(), sends one signal if the vCPU is
 * in guest mode (inside ioctl(KVM_RUN), or inside the guest callback of the
 * thread backend), and otherwise does nothing: the vCPU checks its requests
 * before every guest entry.  The protocol is the one of the Linux kernel's
 * Documentation/virt/kvm/vcpu-requests.rst, with the same names, the same
 * constants and the same memory ordering; docs/protocol.md maps every kernel
 * name to ours and gives the barrier pairings.
 *
 * Conventions of every function below:
 *  - Errors are returned as negative errno values and never abort; a short
 *    message naming the problem is left in vcpureq_errmsg() (per thread).
 *  - NULL handles: functions returning int give -EINVAL; accessors that
 *    return a value give 0, NULL, false or VCPUREQ_OUTSIDE_GUEST_MODE.
 *  - After vcpureq_vm_destroy() every int-returning call on the VM or its
 *    vCPUs gives -ESHUTDOWN (vcpureq_vcpu_kvm_run() NULL).
 *  - fork(): a VM belongs to the process that created it; in a child every
 *    int-returning call on an inherited VM gives -ECHILD (its vCPU threads
 *    are the parent's).  Create new VMs in the child.
 *  - The kick signal is the library's: an application that later installs
 *    its own handler for it makes vcpureq_vcpu_bind() fail with -EBUSY; one
 *    that blocks it in a bound vCPU thread (IMMEDIATE_EXIT, thread
 *    backend) or takes it with sigwait()/signalfd loses kicks.
 *  - A vCPU thread must unbind before it exits; if it did not,
 *    vcpureq_vm_destroy() finds the thread gone and goes on.
 *  - "vCPU thread" means the thread that called vcpureq_vcpu_bind() for that
 *    vCPU and has not unbound it.  Functions restricted to the vCPU thread
 *    return -EPERM from any other thread.
 *  - "Any thread" functions are thread-safe.  Those marked
 *    async-signal-safe may also be called from a signal handler.
 *  - Memory ordering is stated per function in C11 terms.
 */
#ifndef VCPUREQ_VCPUREQ_H
#define VCPUREQ_VCPUREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "vcpureq/version.h"

/*
 * The version of the library linked at run time, which may differ from the
 * one compiled against (VCPUREQ_VERSION, VCPUREQ_VERSION_STRING):
 * vcpureq_version() returns (major << 16) | (minor << 8) | patch,
 * vcpureq_version_string() "major.minor.patch" (static storage).
 * Any thread; never blocks; async-signal-safe; no memory ordering needed
 * (constants).
 */
unsigned int vcpureq_version(void);
const char *vcpureq_version_string(void);

/* ---------------------------------------------------------------------- */
/* Request encoding: the kernel's values (include/linux/kvm_host.h, 6.4-6.12). */

/* Low 8 bits: the request number, i.e. the bit index in the request bitmap.
 * Our bitmap has 64 bits, so numbers 64..255 are refused with -EINVAL. */
#define VCPUREQ_REQUEST_MASK 0xffu
/* Only vCPUs in guest mode need attention: a sleeping vCPU is not woken. */
#define VCPUREQ_REQUEST_NO_WAKEUP (1u << 8)
/*
 * Wait for the acknowledgement of every target that was not outside guest
 * mode (a sleeping or OUTSIDE target is not waited for).  What it
 * guarantees: when the request returns, every guest-mode or lockless-walk
 * instance that was in progress at the requester's fence has ended.  An
 * instance that began after that fence may still be running, even one the
 * requester saw and signalled; it saw everything written before the
 * request (and, if the request sets a bit, aborts at its final check).
 * This is weaker than the kernel's IPI wait, which waits for every
 * instance its mode read saw (docs/protocol.md, "What WAIT guarantees").
 * Several requesters may WAIT on one vCPU at once: its exit wakes all of
 * them (stat acks_at_recheck counts an ack found only at a waiter's 20 ms
 * recheck instead).
 */
#define VCPUREQ_REQUEST_WAIT (1u << 9)
/* Set no bit: only kick (and, with WAIT, wait).  Not valid for
 * vcpureq_make_request(), which would then do nothing. */
#define VCPUREQ_REQUEST_NO_ACTION (1u << 10)
/*
 * Numbers below this are architecture independent (ours), as in the kernel:
 * 0-2 are VCPUREQ_REQ_TLB_FLUSH, VM_DEAD and UNBLOCK, and 3-7 are reserved
 * (every call that takes a request refuses them with -EINVAL, so that a
 * user request cannot silently share a generic request's bit).  The user's
 * own requests are VCPUREQ_ARCH_REQ(nr) == nr + 8, nr in 0..55.
 */
#define VCPUREQ_REQUEST_ARCH_BASE 8
#define VCPUREQ_REQUEST_NR_MAX 63u

/*
 * VCPUREQ_ARCH_REQ(nr): nr must be 0..55.  Out of range, a constant nr does
 * not compile (GCC and Clang, C), and a run-time one gives
 * VCPUREQ_REQUEST_BAD_NR, which every call that takes a request refuses
 * with -EINVAL: it never aliases a generic request (249 + 8 would be bit 1,
 * VM_DEAD, modulo 256).
 */
#define VCPUREQ_REQUEST_BAD_NR (1u << 31)
#define VCPUREQ__ARCH_NR_OK(nr) \
	((unsigned long long)(nr) <= \
	 VCPUREQ_REQUEST_NR_MAX - VCPUREQ_REQUEST_ARCH_BASE)
#define VCPUREQ__ARCH_REQ_RT(nr, flags) \
	(VCPUREQ__ARCH_NR_OK(nr) ? \
	 (((unsigned int)(nr) + VCPUREQ_REQUEST_ARCH_BASE) | \
	  (unsigned int)(flags)) : VCPUREQ_REQUEST_BAD_NR)
#if defined(__GNUC__) && !defined(__cplusplus)
/* A negative bit-field width is a compile error (the kernel's
 * BUILD_BUG_ON_ZERO); only a constant nr can make it negative. */
#define VCPUREQ_ARCH_REQ_FLAGS(nr, flags) \
	(VCPUREQ__ARCH_REQ_RT(nr, flags) + \
	 0 * (unsigned int)sizeof(struct { \
		int vcpureq_arch_req_nr_above_55 : \
			__builtin_choose_expr(__builtin_constant_p(nr), \
				VCPUREQ__ARCH_NR_OK(nr) ? 1 : -1, 1); }))
#else
#define VCPUREQ_ARCH_REQ_FLAGS(nr, flags) VCPUREQ__ARCH_REQ_RT(nr, flags)
#endif
#define VCPUREQ_ARCH_REQ(nr) VCPUREQ_ARCH_REQ_FLAGS(nr, 0)

/* Architecture independent requests (kernel: KVM_REQ_*). */
#define VCPUREQ_REQ_TLB_FLUSH \
	(0u | VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP)
/* The VM is dead: sticky.  Making it (to any vCPU) marks the whole VM dead;
 * from then on every vcpureq_vcpu_run() returns -EIO and no vCPU enters the
 * guest again.  Sleeping vCPUs are not woken (NO_WAKEUP, as in the kernel). */
#define VCPUREQ_REQ_VM_DEAD \
	(1u | VCPUREQ_REQUEST_WAIT | VCPUREQ_REQUEST_NO_WAKEUP)
/* Make vcpureq_vcpu_block() return; consumed by it.  Never carries work into
 * guest entry: vcpureq_vcpu_run() clears it silently. */
#define VCPUREQ_REQ_UNBLOCK 2u
/*
 * Not a request: sets no bit, kicks and waits (kernel: "ensures the target
 * vCPU has exited guest mode").  What it guarantees is WAIT's: when the
 * request returns, every guest-mode or lockless-walk instance that was in
 * progress at the requester's fence has ended.  An instance that began
 * after that fence may still be running; it saw everything written before
 * the request.  Not a guarantee that the target is outside guest mode at
 * the return.
 */
#define VCPUREQ_REQ_OUTSIDE_GUEST_MODE \
	(VCPUREQ_REQUEST_NO_ACTION | VCPUREQ_REQUEST_WAIT | \
	 VCPUREQ_REQUEST_NO_WAKEUP)

/* vcpu->mode (kernel: enum { OUTSIDE_GUEST_MODE, ... }). */
enum vcpureq_mode {
	VCPUREQ_OUTSIDE_GUEST_MODE = 0,
	VCPUREQ_IN_GUEST_MODE = 1,
	VCPUREQ_EXITING_GUEST_MODE = 2,
	VCPUREQ_READING_SHADOW_PAGE_TABLES = 3,
};

/* ---------------------------------------------------------------------- */
/* Objects. */

struct vcpureq_vm;
struct vcpureq_vcpu;
struct kvm_run; /* <linux/kvm.h> */

enum vcpureq_backend {
	/* Real vCPUs on /dev/kvm: guest mode is ioctl(KVM_RUN). */
	VCPUREQ_BACKEND_KVM = 0,
	/* Guest mode is a user callback (opts.guest), or whatever the caller
	 * runs between vcpureq_vcpu_enter() and vcpureq_vcpu_exit(), that must
	 * return soon after vcpureq_guest_kicked() turns true. */
	VCPUREQ_BACKEND_THREAD = 1,
};

/*
 * How a kick gets a vCPU out of KVM_RUN (KVM backend; docs/protocol.md has
 * the measurements behind the default).
 *  SIGMASK: the kick signal stays blocked in the vCPU thread and
 *    KVM_SET_SIGNAL_MASK unblocks it only inside KVM_RUN; no handler runs;
 *    a kicked exit costs one sigtimedwait() to take the pending signal, and
 *    every KVM_RUN pays KVM's signal-mask swap.
 *  IMMEDIATE_EXIT: the kick signal is unblocked in the vCPU thread; its
 *    handler (async-signal-safe, lock-free, SA_ONSTACK) sets
 *    kvm_run->immediate_exit through a per-thread pointer, and vcpureq
 *    clears it before publishing IN_GUEST_MODE (what QEMU, Firecracker and
 *    crosvm do).  A late kick can interrupt a system call of the vCPU
 *    thread outside KVM_RUN with EINTR.
 * The thread backend always works like IMMEDIATE_EXIT (its handler sets
 * the flag vcpureq_guest_kicked() reads).  A ThreadSanitizer build of the
 * library uses SIGMASK for DEFAULT and refuses IMMEDIATE_EXIT (-ENOTSUP):
 * TSan runs signal handlers late, at its next safe point, which loses
 * kicks that land just before KVM_RUN.
 */
enum vcpureq_kick_mechanism {
	VCPUREQ_KICK_DEFAULT = 0, /* the one measured better: IMMEDIATE_EXIT */
	VCPUREQ_KICK_SIGMASK = 1,
	VCPUREQ_KICK_IMMEDIATE_EXIT = 2,
};

/* Returned by the thread backend's guest callback when it stopped because
 * vcpureq_guest_kicked() was true (kernel: KVM_RUN returning -EINTR). */
#define VCPUREQ_GUEST_KICKED (-4)

/* opts.flags */
/* vcpureq_vcpu_run() returns VCPUREQ_RUN_INTR for an EINTR from KVM_RUN
 * that no kick caused (one of the VMM's own signals, unblocked in the vCPU
 * thread); without it such an exit just re-enters the guest. */
#define VCPUREQ_VM_RETURN_FOREIGN_EINTR (1u << 0)

/*
 * Options of a VM.  Extensible: set .size to sizeof(struct vcpureq_vm_opts)
 * (VCPUREQ_VM_OPTS_INIT does), zero everything you do not use.  A caller
 * built against an older, shorter struct passes its smaller size and gets
 * the defaults for the fields it does not know; a larger size whose extra
 * bytes are not all zero is refused with -E2BIG (the caller asks for
 * something this library does not have), as the kernel's
 * copy_struct_from_user().
 */
struct vcpureq_vm_opts {
	size_t size;
	enum vcpureq_backend backend;
	/* vcpureq_vm_create() only: create vCPUs with ids 0..nr_vcpus-1 at
	 * once (1..max_vcpus).  vcpureq_vm_open() requires 0: add vCPUs with
	 * vcpureq_vcpu_create() / vcpureq_vcpu_adopt(). */
	unsigned int nr_vcpus;
	/* Kick signal; 0 selects SIGRTMIN + 5 at run time.  vcpureq installs a
	 * trivial handler; it refuses (-EBUSY) a signal the application
	 * already handles, or whose vcpureq handler (installed by another VM)
	 * the application has replaced.  VMs share the signal; the last
	 * vcpureq_vm_destroy() puts back the disposition the first VM found,
	 * but only while vcpureq's handler is still installed: a handler the
	 * application installed after it stays in place. */
	int kick_signal;
	/*
	 * Request handler, called on the vCPU thread outside guest mode by
	 * vcpureq_vcpu_run() and vcpureq_vcpu_enter() whenever requests are
	 * pending before entry.  It consumes them with
	 * vcpureq_check_request().  Return 0 to go on into the guest, > 0 to
	 * make the call return VCPUREQ_RUN_REQUEST, < 0 to make it return that
	 * error.  If NULL, the call returns VCPUREQ_RUN_REQUEST whenever a
	 * request is pending.  Requests that were pending when the handler
	 * was called and that it leaves pending also make it return
	 * VCPUREQ_RUN_REQUEST, so an unknown request cannot livelock entry;
	 * requests made while it ran are caught by the final check and handed
	 * to it again.
	 */
	int (*handle_requests)(struct vcpureq_vcpu *vcpu, void *opaque);
	/* Block hook (kernel: kvm_arch_vcpu_runnable()), called on the vCPU
	 * thread by vcpureq_vcpu_block(); may be NULL (never runnable).  The
	 * thread that makes it true must then call vcpureq_vcpu_wake_up(). */
	bool (*runnable)(struct vcpureq_vcpu *vcpu, void *opaque);
	/* Thread backend, vcpureq_vcpu_run(): one guest-mode instance.  Must
	 * return VCPUREQ_GUEST_KICKED promptly once vcpureq_guest_kicked() is
	 * true (the kick signal also interrupts its blocking system calls);
	 * any other value ends the instance as a guest exit.  May be NULL for
	 * a VMM that only uses vcpureq_vcpu_enter()/vcpureq_vcpu_exit(). */
	int (*guest)(struct vcpureq_vcpu *vcpu, void *opaque);
	void *opaque;
	/* Halt polling: vcpureq_vcpu_block() spins up to this long (adaptive,
	 * as kvm_vcpu_halt(): a block the poll missed that lasted at most
	 * this long doubles the window, from 10 us, capped at this value; a
	 * longer one shrinks it to 0) before sleeping.  The window is the
	 * stat halt_poll_ns.  0 disables polling; at most
	 * VCPUREQ_HALT_POLL_NS_MAX (a longer poll burns a CPU on every idle
	 * halt). */
	uint64_t halt_poll_ns;
	/* KVM backend: how kicks reach a vCPU in KVM_RUN. */
	enum vcpureq_kick_mechanism kick;
	/* Most vCPUs this VM may have; 0: KVM_CAP_MAX_VCPUS of the VM (KVM
	 * backend), VCPUREQ_THREAD_MAX_VCPUS (thread backend).  A value above
	 * the kernel's limit is refused (-EINVAL). */
	unsigned int max_vcpus;
	/* KVM backend, when vcpureq creates the VM: the KVM_CREATE_VM type. */
	unsigned long kvm_vm_type;
	/* VCPUREQ_VM_* flags. */
	unsigned int flags;
};

#define VCPUREQ_VM_OPTS_INIT { .size = sizeof(struct vcpureq_vm_opts) }

/* Upper bound of opts.halt_poll_ns: 10 ms (KVM's own default is 200 us;
 * the window adapts down to 0 when halts outlast it). */
#define VCPUREQ_HALT_POLL_NS_MAX 10000000u

/* Default (and maximum) vCPU count of a thread-backend VM. */
#define VCPUREQ_THREAD_MAX_VCPUS 4096u

/*
 * Open a VM with no vCPUs (the split lifecycle of a real VMM).
 * KVM backend: @vm_fd < 0: open /dev/kvm and KVM_CREATE_VM (type
 * opts->kvm_vm_type); vcpureq owns and closes both fds at destroy.
 * @vm_fd >= 0: wrap the VMM's own VM fd; vcpureq never closes it (it opens
 * /dev/kvm once, briefly, to read the kvm_run mapping size).  Either way
 * the VMM does its VM-wide setup on vcpureq_vm_kvm_fd() before adding
 * vCPUs (KVM_CREATE_IRQCHIP, KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP),
 * KVM_CREATE_PIT2, KVM_SET_TSS_ADDR, memory slots, ...), then adds them
 * with vcpureq_vcpu_create() or vcpureq_vcpu_adopt().  Thread backend:
 * @vm_fd must be -1.
 * Errors: -EINVAL bad options (named), -E2BIG unknown non-zero option
 * bytes; -EBADF @vm_fd is not open; -EINVAL @vm_fd is not a KVM VM fd
 * (the message names what it is, e.g. /dev/kvm, a vCPU fd, a pipe, from
 * its /proc/self/fd link; without /proc, from KVM_GET_API_VERSION and
 * KVM_CHECK_EXTENSION); -ENOENT/-EACCES/-ENODEV /dev/kvm missing or not
 * permitted (the message says what to do); -ENOTSUP a needed KVM capability is absent
 * (named); -EBUSY the kick signal is handled by the application; -ENOMEM.
 * Any thread; may block; not async-signal-safe.  Ordering: none of its
 * own (the VM is the caller's until it hands *@out to other threads,
 * which it must publish itself, e.g. before pthread_create()).
 */
int vcpureq_vm_open(const struct vcpureq_vm_opts *opts, int vm_fd,
		    struct vcpureq_vm **out);
/*
 * The one-call convenience: vcpureq_vm_open(opts, -1, out), then
 * opts->nr_vcpus vCPUs with ids and indexes 0..nr_vcpus-1.  Nothing is
 * left behind on failure.  Same errors, contract as vcpureq_vm_open().
 */
int vcpureq_vm_create(const struct vcpureq_vm_opts *opts,
		      struct vcpureq_vm **out);
/*
 * Add a vCPU with the VMM's choice of @vcpu_id (KVM: the KVM_CREATE_VCPU
 * id, e.g. a sparse x86 APIC id; thread backend: a label).  KVM backend:
 * vcpureq creates the vCPU fd and maps its kvm_run, and closes/unmaps them
 * at destroy; on arm64 it also initialises the vCPU (KVM_ARM_VCPU_INIT
 * with KVM_ARM_PREFERRED_TARGET's target and the PSCI 0.2 feature: a VMM
 * that needs other features, e.g. POWER_OFF for secondaries, PMU or SVE,
 * creates and initialises its vCPUs itself and adopts them).  The new
 * vCPU gets the next index (0, 1, ...: its bit in request masks, see
 * vcpureq_vm_vcpu()).  May be called while other vCPUs
 * run and requests fly: a broadcast that started before the vCPU was
 * published does not target it, one that starts after does (release on
 * the published count, pairing with the acquire load of every broadcast
 * and of vcpureq_vm_vcpu()).  Errors: -EEXIST id already used; -ENOSPC
 * max_vcpus reached; -ESHUTDOWN; the KVM_CREATE_VCPU or mmap error.  If
 * the kvm_run mmap fails after KVM_CREATE_VCPU succeeded, nothing is added
 * but vcpureq keeps the new vCPU fd (KVM refuses the id from then on): a
 * retry with the same @vcpu_id maps it again; never retried, it is closed
 * at vcpureq_vm_destroy().  Any
 * thread (serialised with other adds by a mutex); may block; not
 * async-signal-safe; not concurrently with vcpureq_vm_destroy().
 */
int vcpureq_vcpu_create(struct vcpureq_vm *vm, unsigned long vcpu_id,
			struct vcpureq_vcpu **out);
/*
 * Add a vCPU the VMM created itself (KVM backend): @vcpu_fd from its
 * KVM_CREATE_VCPU of @vcpu_id on this VM, @run its kvm_run mapping of
 * @run_size bytes (KVM_GET_VCPU_MMAP_SIZE), or NULL to have vcpureq map
 * one.  vcpureq never closes @vcpu_fd nor unmaps the VMM's mapping (it
 * unmaps its own at destroy); the VMM keeps both valid until after
 * vcpureq_vm_destroy().  vcpureq takes over the kvm_run fields of the
 * protocol: immediate_exit and, with the interrupt mailbox,
 * request_interrupt_window; and, with VCPUREQ_KICK_SIGMASK, the vCPU's
 * KVM_SET_SIGNAL_MASK.  Otherwise as vcpureq_vcpu_create(); -EINVAL for
 * the thread backend, a negative fd or a run_size below sizeof(struct
 * kvm_run).  @vcpu_fd is checked before anything is added: -EBADF not
 * open; -EINVAL not a vCPU fd (the message names what it is: /dev/kvm,
 * the VM fd, a pipe...), a vCPU fd of another id (both ids named), or of
 * another VM; -EEXIST the same fd or a dup of it already adopted (its id
 * is in the VM).  The other-VM check probes the VM's coalesced-MMIO ring
 * page through @vcpu_fd and the VM's first vCPU (docs/vmm.md): the first
 * vCPU of a VM cannot be checked against its VM, nor any without
 * KVM_CAP_COALESCED_MMIO.  Without /proc the kind of fd is checked by
 * mapping a kvm_run page and a dup by kcmp(KCMP_FILE); the id is not.
 * Thread, blocking, async-signal-safety and ordering as
 * vcpureq_vcpu_create().
 */
int vcpureq_vcpu_adopt(struct vcpureq_vm *vm, unsigned long vcpu_id,
		       int vcpu_fd, struct kvm_run *run, size_t run_size,
		       struct vcpureq_vcpu **out);
/*
 * Shut the VM down: closes the KVM file descriptors vcpureq opened and
 * unmaps the kvm_run mappings it made (never the VMM's own, see above),
 * and releases the kick signal (the last VM using it restores the
 * signal's earlier disposition only if vcpureq's handler is still
 * installed; an application's later handler is left alone).  Every later call on the VM or its vCPUs
 * returns -ESHUTDOWN (the memory stays valid until vcpureq_vm_free()).
 * -EBUSY while a vCPU is still bound.  Any thread that is not a vCPU
 * thread of this VM; not async-signal-safe.  Not to be called
 * concurrently with other calls on this VM.
 */
int vcpureq_vm_destroy(struct vcpureq_vm *vm);
/* Destroy (if not yet done) and free.  -EBUSY (nothing freed) while a vCPU
 * is bound.  After success the pointers are gone: any use is the caller's
 * use-after-free. */
int vcpureq_vm_free(struct vcpureq_vm *vm);

/*
 * Accessors.  Any thread; never block; async-signal-safe.
 * vcpureq_vm_vcpu(): the vCPU of index @index (order of addition; the bit
 *   in request masks), NULL if none; acquire, so a vCPU added by another
 *   thread is seen whole.
 * vcpureq_vm_vcpu_by_id(): the vCPU whose vcpu id is @vcpu_id, or NULL
 *   (a scan of the vCPUs: O(nr_vcpus)).
 * vcpureq_vm_nr_vcpus(): vCPUs added so far (acquire); 0 for NULL.
 * vcpureq_vm_max_vcpus(): the VM's limit (opts.max_vcpus or the kernel's).
 * vcpureq_vcpu_id() / vcpureq_vcpu_index(): the vCPU's id and index.
 */
struct vcpureq_vcpu *vcpureq_vm_vcpu(const struct vcpureq_vm *vm,
				     unsigned int index);
struct vcpureq_vcpu *vcpureq_vm_vcpu_by_id(const struct vcpureq_vm *vm,
					   unsigned long vcpu_id);
unsigned int vcpureq_vm_nr_vcpus(const struct vcpureq_vm *vm);
unsigned int vcpureq_vm_max_vcpus(const struct vcpureq_vm *vm);
unsigned long vcpureq_vcpu_id(const struct vcpureq_vcpu *vcpu);
unsigned int vcpureq_vcpu_index(const struct vcpureq_vcpu *vcpu);
struct vcpureq_vm *vcpureq_vcpu_vm(const struct vcpureq_vcpu *vcpu);
/*
 * A per-vCPU pointer for the VMM (its own vCPU state), NULL until set;
 * vcpureq never reads it.  Set and read from any thread; never block;
 * async-signal-safe.  Ordering: the set is a release store and the read an
 * acquire load, so what the VMM wrote to *@data before the set is seen by
 * a thread (e.g. the request handler on the vCPU thread) that reads the
 * pointer back.  -EINVAL for a NULL vCPU; works after
 * vcpureq_vm_destroy() too (until vcpureq_vm_free()).
 */
int vcpureq_vcpu_set_user_data(struct vcpureq_vcpu *vcpu, void *data);
void *vcpureq_vcpu_user_data(const struct vcpureq_vcpu *vcpu);
/* The kick signal actually used, and the kick mechanism (never DEFAULT).
 * Any thread; never block; async-signal-safe; no ordering (both are fixed
 * when the VM is opened). */
int vcpureq_vm_kick_signal(const struct vcpureq_vm *vm);
enum vcpureq_kick_mechanism vcpureq_vm_kick_mechanism(const struct vcpureq_vm *vm);
/* KVM backend: the VM fd (for memory slots and VM-wide setup) and a vCPU's
 * fd and kvm_run (for registers and exit data).  -ENOTSUP / NULL on the
 * thread backend. */
int vcpureq_vm_kvm_fd(const struct vcpureq_vm *vm);
int vcpureq_vcpu_kvm_fd(const struct vcpureq_vcpu *vcpu);
struct kvm_run *vcpureq_vcpu_kvm_run(const struct vcpureq_vcpu *vcpu);
/* KVM backend: whether the vCPU has an in-kernel LAPIC (KVM_CREATE_IRQCHIP
 * or split irqchip, probed with KVM_GET_LAPIC when it was added).  Then
 * HLT sleeps inside KVM_RUN and interrupts go through KVM_IRQ_LINE,
 * KVM_SIGNAL_MSI or irqfd: KVM delivers them itself, no kick needed; the
 * interrupt mailbox (vcpureq_post_interrupt()) is refused with -ENOTSUP.
 * arm64: whether the VM has an in-kernel vGIC (KVM_CREATE_DEVICE of
 * KVM_DEV_TYPE_ARM_VGIC_V3 or _V2, probed with a KVM_IRQ_LINE that changes
 * nothing: create the vGIC before adding the vCPUs); same consequences
 * for the mailbox and interrupts (wfi sleeps inside KVM_RUN either way).
 * Any thread; never blocks; async-signal-safe; no ordering (fixed when the
 * vCPU is added, published with it). */
bool vcpureq_vcpu_lapic_in_kernel(const struct vcpureq_vcpu *vcpu);

/* Per-thread message for the last error returned to this thread, or "". */
const char *vcpureq_errmsg(void);

/* ---------------------------------------------------------------------- */
/* The kernel's request API (Documentation/virt/kvm/vcpu-requests.rst).
 * The argument order is the kernel's: request first. */

/*
 * kvm_make_request(): set the request bit; no kick.  Everything the caller
 * wrote before is visible to the vCPU thread once its
 * vcpureq_check_request() returns 1 for this request (release on the bit,
 * pairing with the acquire in vcpureq_check_request()).
 * Returns 0; -EINVAL for a number above 63, NO_ACTION, or unknown flag bits;
 * -ESHUTDOWN after destroy.  Any thread; never blocks; async-signal-safe.
 */
int vcpureq_make_request(unsigned int req, struct vcpureq_vcpu *vcpu);

/*
 * kvm_vcpu_kick(): make the vCPU notice its requests promptly.  Wakes it if
 * it sleeps in vcpureq_vcpu_block() (no signal then); else, if it is in guest
 * mode and this caller wins the IN_GUEST -> EXITING transition, sends the one
 * signal of this guest-mode instance; else does nothing.  Never signals the
 * calling thread itself.  Ordering: a full fence precedes the reads of the
 * sleep state and mode, pairing with the vCPU's fences after it publishes
 * IN_GUEST_MODE or registers as a sleeper (Dekker), so a request made before
 * the kick is never stranded.  Returns 1 if a signal was sent, 0 if not,
 * -EAGAIN if the signal could not be queued (the real-time queue is full,
 * RLIMIT_SIGPENDING; retried with a back-off of about 8 ms first; the vCPU
 * is left IN_GUEST_MODE so that the next kick tries again), -ESRCH if the
 * vCPU thread exited without unbinding, -errno.  Any thread; never blocks
 * beyond that back-off; async-signal-safe.
 */
int vcpureq_vcpu_kick(struct vcpureq_vcpu *vcpu);

/*
 * Make and kick one vCPU with the full flag semantics of
 * kvm_make_vcpus_request_mask() for a single target: NO_ACTION sets no bit,
 * NO_WAKEUP leaves a sleeper asleep, WAIT waits for the acknowledgement.
 * Returns 1 if a signal was sent, 0 if not, -errno.  Any thread; blocks
 * (futex) only with WAIT, never waiting on itself; async-signal-safe
 * without WAIT.
 */
int vcpureq_request(unsigned int req, struct vcpureq_vcpu *vcpu);

/*
 * kvm_make_all_cpus_request() / kvm_make_vcpus_request_mask(): make the
 * request of every vCPU online when the call starts (or those whose index
 * bit is set in @mask, @mask_bits bits long, at most 2^32 - 1; bits >= the
 * vCPU count must be clear) and kick them; with WAIT, all signals
 * are sent first, then every acknowledgement is awaited (never holding a
 * lock): when it returns, every guest-mode or lockless-walk instance that
 * was in progress at the requester's fence has ended (VCPUREQ_REQUEST_WAIT
 * says what that does not cover).  Returns 1 if at least one signal was
 * sent (the kernel's bool), 0 if none, -EINVAL for a bad request or mask,
 * -EDEADLK for a WAIT request made from inside a lockless walk, or of
 * another vCPU (of any VM) from guest mode (the thread backend's guest
 * callback): two such callers could wait for each other forever.
 * -EAGAIN if a kick signal could not be queued (RLIMIT_SIGPENDING full,
 * after a bounded back-off): the requests are made and every other target
 * was kicked and waited for; the one that could not be kicked sees its
 * request at its next exit, and a WAIT that relied on that signal kicks it
 * again itself after 20 ms.  -ENOMEM (nothing made) if a WAIT broadcast
 * cannot allocate its per-target acknowledgement state.  Any thread;
 * blocks only with WAIT; a vCPU thread never waits on itself; async-signal-
 * safe without WAIT (the id-list form allocates: not async-signal-safe).
 * Any vCPU may be named once.
 */
int vcpureq_make_all_cpus_request(struct vcpureq_vm *vm, unsigned int req);
int vcpureq_make_vcpus_request_mask(struct vcpureq_vm *vm, unsigned int req,
				    const uint64_t *mask, size_t mask_bits);
/* The same for a list of vCPU indexes: -EINVAL if one is out of range or
 * named twice (nothing is made then). */
int vcpureq_make_vcpus_request(struct vcpureq_vm *vm, unsigned int req,
			       const unsigned int *ids, size_t nr_ids);

/* kvm_vm_dead(): make VCPUREQ_REQ_VM_DEAD of every vCPU.  Pausers waiting
 * return -EIO; run-on-vCPU items queued to a vCPU with no bound thread are
 * completed with -ECANCELED on the caller's thread. */
int vcpureq_vm_dead(struct vcpureq_vm *vm);
/* Whether the VM is dead.  Any thread; acquire. */
bool vcpureq_vm_is_dead(const struct vcpureq_vm *vm);

/*
 * vCPU-side tests (vCPU thread only; -EPERM elsewhere, -EINVAL for a bad
 * request number).  Return 1 (pending) / 0 (not) / -errno: compare with > 0,
 * never use as a bool.
 *
 * vcpureq_request_pending(): any request pending (relaxed load).
 * vcpureq_test_request(): this one pending; acquire load, so the payload
 *   written before the make is visible if it returns 1.
 * vcpureq_clear_request(): clear without acting (relaxed RMW).
 * vcpureq_check_request(): test and, if pending, clear with a fully ordered
 *   RMW (kernel: clear_bit + smp_mb__after_atomic()): the payload is
 *   visible, and a request made again after the clear is not lost.
 */
int vcpureq_request_pending(const struct vcpureq_vcpu *vcpu);
int vcpureq_test_request(unsigned int req, const struct vcpureq_vcpu *vcpu);
int vcpureq_clear_request(unsigned int req, struct vcpureq_vcpu *vcpu);
int vcpureq_check_request(unsigned int req, struct vcpureq_vcpu *vcpu);

/* ---------------------------------------------------------------------- */
/* The vCPU thread. */

/*
 * Make the calling thread the vCPU thread of @vcpu.  Sets up this thread
 * for the kick mechanism before it publishes the thread, so a kick never
 * reaches a thread that is not ready for it: SIGMASK blocks the kick
 * signal here and gives KVM_RUN a mask without it (KVM_SET_SIGNAL_MASK,
 * from this thread's mask at bind); IMMEDIATE_EXIT and the thread backend
 * unblock it once the handler's per-thread pointer is set.  -EBUSY if the
 * vCPU is bound or this thread is bound to another vCPU; -ESHUTDOWN.  May
 * block briefly; not async-signal-safe.
 */
int vcpureq_vcpu_bind(struct vcpureq_vcpu *vcpu);
/*
 * Stop being the vCPU thread: waits for kickers that are about to signal it,
 * drains a pending kick signal and restores the thread's signal mask.
 * -EBUSY from guest mode, a lockless walk or the request handler (the
 * vCPU would go on unbound).  vCPU thread only.
 */
int vcpureq_vcpu_unbind(struct vcpureq_vcpu *vcpu);

enum vcpureq_run_result {
	/* vcpureq_vcpu_enter(): enter the guest now. */
	VCPUREQ_RUN_ENTER = 0,
	/* The guest exited for a reason the VMM handles: KVM backend, see
	 * vcpureq_vcpu_kvm_run()->exit_reason; thread backend, the guest
	 * callback's value from vcpureq_vcpu_guest_ret(). */
	VCPUREQ_RUN_EXIT = 1,
	/* Requests are pending that the handler did not consume (or there is
	 * no handler): check them with vcpureq_check_request() and run again.
	 * Only the caller's requests: the library's own (pause, run-on-vCPU
	 * work) are processed inside and never cause this return.
	 * KVM backend: a pending I/O or MMIO exit was completed first, so the
	 * registers are consistent. */
	VCPUREQ_RUN_REQUEST = 2,
	/* vcpureq_vcpu_exit(): nothing for the VMM (a kick, an interrupt
	 * window, a stale signal): call vcpureq_vcpu_enter() again. */
	VCPUREQ_RUN_AGAIN = 3,
	/* KVM_RUN failed with EINTR that no kick caused (one of the VMM's own
	 * signals); only with VCPUREQ_VM_RETURN_FOREIGN_EINTR. */
	VCPUREQ_RUN_INTR = 4,
};

/*
 * One guest entry with the full protocol (kernel: vcpu_enter_guest()):
 * vcpureq_vcpu_enter(), KVM_RUN (thread backend: opts.guest), then
 * vcpureq_vcpu_exit(), looping over kicks and spurious exits.  Returns
 * only for a guest exit (VCPUREQ_RUN_EXIT), for requests the caller must
 * handle (VCPUREQ_RUN_REQUEST), for a foreign EINTR when asked
 * (VCPUREQ_RUN_INTR), or for an error: -EIO once the VM is dead, -EPERM
 * not the vCPU thread, -EBUSY called from the request handler or guest
 * mode, -EINVAL thread backend without opts.guest, or the KVM_RUN error.
 * vCPU thread only; blocks in the guest; not async-signal-safe.
 */
int vcpureq_vcpu_run(struct vcpureq_vcpu *vcpu);

/*
 * The same entry for a VMM that keeps its own run loop: the pair goes
 * around the VMM's own ioctl(KVM_RUN) (thread backend: its own guest
 * code, which polls vcpureq_guest_kicked()):
 *
 *   for (;;) {
 *           r = vcpureq_vcpu_enter(vcpu);
 *           if (r == VCPUREQ_RUN_REQUEST) {    // the handler left some
 *                   handle_my_requests(vcpu);  // check_request() them
 *                   continue;
 *           }
 *           if (r != VCPUREQ_RUN_ENTER)
 *                   break;                     // -EIO: VM_DEAD; -errno
 *           r = ioctl(vcpu_fd, KVM_RUN, 0);
 *           r = vcpureq_vcpu_exit(vcpu, r < 0 ? -errno : 0);  // at once
 *           if (r == VCPUREQ_RUN_AGAIN)
 *                   continue;                  // a kick: requests first
 *           if (r != VCPUREQ_RUN_EXIT)
 *                   break;                     // VCPUREQ_RUN_INTR, -errno
 *           handle(run->exit_reason);          // device emulation
 *   }
 *
 * vcpureq_vcpu_exit() belongs right after KVM_RUN returns, before the VMM
 * handles the exit: until it runs the vCPU still counts as in guest mode,
 * so every WAIT requester and pauser would wait behind the VMM's device
 * emulation (an MMIO exit to a slow backend, a disk read), and kicks of
 * that time would be sent as signals to a thread outside KVM_RUN.
 * docs/vmm.md shows the same loop.
 *
 * vcpureq_vcpu_enter(): process requests (the handler), forget the kicks
 * of ended instances (immediate_exit, a pending kick signal), publish
 * IN_GUEST_MODE, full fence [V] (pairs with every requester's [R]), sync
 * the mailbox, final check of requests, mode and VM_DEAD (on failure:
 * OUTSIDE, epoch++, back to the requests), inject from the mailbox.
 * Returns VCPUREQ_RUN_ENTER with the vCPU IN_GUEST_MODE: the caller must
 * enter at once and then call vcpureq_vcpu_exit(), whatever happens (a
 * kick sent from now on ends that entry: KVM_RUN returns EINTR at once or
 * interrupts the guest).  Otherwise, outside guest mode:
 * VCPUREQ_RUN_REQUEST, -EIO (VM dead), -EPERM, -EBUSY (already entered,
 * in a walk, or from the request handler), or the handler's error.
 *
 * vcpureq_vcpu_exit(): @ret is what the entry returned: KVM_RUN's 0 or
 * -errno; thread backend 0, or VCPUREQ_GUEST_KICKED (or -EINTR) for an
 * instance that ended because it was kicked.  Publishes OUTSIDE (release),
 * bumps the exit epoch (release: the acknowledgement), wakes WAIT
 * requesters, and classifies the exit: VCPUREQ_RUN_EXIT (an exit for the
 * VMM: run->exit_reason), VCPUREQ_RUN_AGAIN (kicked, interrupt window,
 * EAGAIN: nothing for the VMM), VCPUREQ_RUN_INTR (foreign EINTR, with the
 * flag), or @ret itself for another KVM_RUN error.  -EPERM / -EINVAL (no
 * entry in progress) change nothing.
 *
 * Both: vCPU thread only; not async-signal-safe.  vcpureq_vcpu_exit()
 * never blocks.  vcpureq_vcpu_enter() blocks while the vCPU is paused (it
 * parks inside, see vcpureq_pause()), for a pending I/O exit's completion
 * (one KVM_RUN with immediate_exit) and for whatever the request handler
 * and queued work functions do; otherwise it does not.
 */
int vcpureq_vcpu_enter(struct vcpureq_vcpu *vcpu);
int vcpureq_vcpu_exit(struct vcpureq_vcpu *vcpu, int ret);
/* Thread backend: the guest callback's last return value. */
int vcpureq_vcpu_guest_ret(const struct vcpureq_vcpu *vcpu);

/*
 * Thread backend, called from the guest callback (or a signal handler on the
 * vCPU thread): true once this guest-mode instance has been kicked.  Relaxed
 * load of a flag the kick's signal handler sets; cleared before
 * IN_GUEST_MODE is published (kernel analog: immediate_exit).
 */
bool vcpureq_guest_kicked(const struct vcpureq_vcpu *vcpu);

enum vcpureq_wake_reason {
	VCPUREQ_WAKE_RUNNABLE = 1u << 0,  /* the runnable hook said so */
	VCPUREQ_WAKE_INTERRUPT = 1u << 1, /* a posted interrupt is pending */
	VCPUREQ_WAKE_REQUEST = 1u << 2,   /* a request without NO_WAKEUP */
	VCPUREQ_WAKE_UNBLOCK = 1u << 3,   /* REQ_UNBLOCK, now consumed */
	VCPUREQ_WAKE_DEAD = 1u << 4,      /* the VM is dead */
};

/*
 * kvm_vcpu_block(): sleep (futex) until the vCPU is runnable, a posted
 * interrupt is pending, a request made without NO_WAKEUP arrived since the
 * vCPU last processed requests, or UNBLOCK (consumed).  "Processed": the
 * processing at guest entry (vcpureq_vcpu_enter() / _run()) spends that
 * waking hint, a guest exit does not (a request made while the vCPU was in
 * guest mode ends the block after a halt exit), and a block that returns
 * VCPUREQ_WAKE_REQUEST consumes it.  Polls first when
 * halt polling is enabled.  Registers as a sleeper, full fence, then checks
 * (pairs with the waker's full fence between its write and its read of the
 * sleep state), so no wake-up is lost.  Returns the reasons (> 0), or
 * -errno: -EBUSY between vcpureq_vcpu_enter() and vcpureq_vcpu_exit()
 * (the vCPU is in guest mode: asleep there it would hold every WAIT
 * requester; call vcpureq_vcpu_exit() first), -EINVAL in a lockless walk.
 * vCPU thread only; blocks.
 */
int vcpureq_vcpu_block(struct vcpureq_vcpu *vcpu);

/*
 * kvm_vcpu_wake_up(): wake the vCPU if it sleeps in vcpureq_vcpu_block().
 * For state the runnable hook reads: write it, then call this; the full
 * fence here pairs with the sleeper's.  Returns 1 if it woke the vCPU.
 * Any thread; never blocks; async-signal-safe.
 */
int vcpureq_vcpu_wake_up(struct vcpureq_vcpu *vcpu);

/*
 * walk_shadow_page_lockless_begin()/end(): a lockless-reader section on the
 * vCPU thread, outside guest mode.  begin publishes
 * READING_SHADOW_PAGE_TABLES with a full fence after it, so a WAIT requester
 * that replaces the structure either is seen by the reader or waits for the
 * section to end; end publishes OUTSIDE_GUEST_MODE with release, bumps the
 * exit epoch and wakes waiters.  Not nestable.  vCPU thread only.
 */
int vcpureq_walk_lockless_begin(struct vcpureq_vcpu *vcpu);
int vcpureq_walk_lockless_end(struct vcpureq_vcpu *vcpu);

/* kvm_vcpu_is_blocking(): the vCPU is registered as a sleeper in
 * vcpureq_vcpu_block() (relaxed load); any thread; for tests and monitoring. */
bool vcpureq_vcpu_is_blocking(const struct vcpureq_vcpu *vcpu);

/* The exit epoch: bumped (release) each time the vCPU leaves IN_GUEST,
 * EXITING or READING; what WAIT requesters wait on.  Any thread; acquire. */
uint32_t vcpureq_vcpu_exit_epoch(const struct vcpureq_vcpu *vcpu);

/* The current mode (relaxed load); any thread; for tests and monitoring. */
enum vcpureq_mode vcpureq_vcpu_mode(const struct vcpureq_vcpu *vcpu);

/* ---------------------------------------------------------------------- */
/* Operations built on requests: deadlines, pause/resume, run-on-vCPU. */

/*
 * A deadline for a call that waits for vCPUs (WAIT requests, pause).
 * Set .size to sizeof(struct vcpureq_deadline).  @when is absolute,
 * CLOCK_MONOTONIC.  If @pending is not NULL, the call sets bit i of it
 * (@pending_bits bits long; bits it cannot hold are not reported) for each
 * target of index i that had not acknowledged (or parked) by the deadline,
 * and clears the others.  Nothing is lost at a timeout: the requests stay
 * made (the bits set, the vCPUs kicked), a pause stays in force; a later
 * call can wait again (vcpureq_pause_wait() for a pause).  Every call
 * that takes a deadline checks it first: a negative @when.tv_sec or a
 * @when.tv_nsec outside [0, 999999999] is -EINVAL naming the field, and
 * nothing is done (no request made, no pause taken); a @when already past
 * is valid: -ETIMEDOUT at once if a wait is needed, success if none is.
 */
struct vcpureq_deadline {
	size_t size;
	struct timespec when;
	uint64_t *pending;
	size_t pending_bits;
};

/*
 * vcpureq_make_vcpus_request_mask() with a deadline (@dl NULL: none) and
 * @mask NULL meaning every vCPU.  -ETIMEDOUT if a WAIT target had not
 * acknowledged by @dl->when (named in @dl->pending); otherwise as
 * vcpureq_make_vcpus_request_mask().  Any thread; blocks only with WAIT,
 * at most until the deadline; not async-signal-safe with WAIT.
 * Ordering as vcpureq_make_vcpus_request_mask(): release on each bit,
 * full fence [R] before the mode reads; with WAIT, acquire on each
 * target's exit epoch (the target's instance happens before the return).
 */
int vcpureq_make_vcpus_request_deadline(struct vcpureq_vm *vm, unsigned int req,
					const uint64_t *mask, size_t mask_bits,
					const struct vcpureq_deadline *dl);

/*
 * Pause the vCPUs of @mask (NULL: every vCPU online when the call starts):
 * returns when every target is *parked*: outside guest mode and staying
 * out until resumed.  A target in guest mode gets one kick signal (all
 * signals are sent before any wait: N at most); a pending I/O or MMIO exit
 * is completed first (KVM_RUN with immediate_exit, as api.rst requires);
 * KVM_KVMCLOCK_CTRL is issued by every parked KVM vCPU's thread, after it
 * reported parked (off the pause's critical path) and before it can run
 * guest code again (so that a kvmclock guest does not report soft
 * lock-ups; the EINVAL of a guest without kvmclock is ignored).  A vCPU
 * asleep in vcpureq_vcpu_block(), or with no bound thread, counts as
 * parked without being woken: it parks at its next vcpureq_vcpu_enter().
 * A parked vCPU's thread runs the run-on-vCPU items queued to it
 * (vcpureq_run_on_vcpu()) and stays parked.  A vCPU halted inside KVM_RUN
 * (in-kernel irqchip) is kicked like a running one: KVM can wake it there
 * without returning to user space.  Pauses are counted: a vCPU paused twice needs
 * two resumes.  Parked vCPU threads wait inside vcpureq_vcpu_enter() /
 * vcpureq_vcpu_run(), and return -EIO from there at VM_DEAD.
 * No lock is held while waiting.  From a vCPU thread, its own vCPU may be
 * in @mask: it is counted paused (and parks at its next entry) but never
 * waited for.  -ETIMEDOUT past @dl (the pause stays in force: resume it,
 * or wait again with vcpureq_pause_wait(), never with vcpureq_pause(),
 * which adds a second pause that needs a second resume); -EDEADLK from
 * guest mode or a lockless walk (a paused vCPU could be the one this
 * thread waits on); -EINVAL bad mask or deadline (nothing paused).
 * VM_DEAD: a pause of a dead VM is -EIO at once (nothing paused); a pause
 * waiting when the VM dies returns -EIO promptly (woken by
 * vcpureq_vm_dead(), not waiting for the vCPU threads to unbind).  A vCPU
 * thread waiting in vcpureq_pause(), vcpureq_pause_wait() or
 * vcpureq_run_on_vcpu() counts as parked for other pausers.
 * Ordering: everything a target did in guest mode happens before the
 * return (acquire on its park publication).  Any thread; blocks (at
 * most until @dl); not async-signal-safe (it waits, and formats error
 * messages).
 */
int vcpureq_pause(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits,
		  const struct vcpureq_deadline *dl);
/*
 * Wait, as vcpureq_pause() does, until every vCPU of @mask (NULL: all) is
 * parked, adding no pause: for a vcpureq_pause() that returned
 * -ETIMEDOUT (its pause stays in force; one resume undoes it).  -EINVAL
 * (nothing waited for) if a target is not paused, or a bad mask or
 * deadline; -ETIMEDOUT past @dl (@dl->pending names the late); -EIO if
 * the VM is or becomes dead; -EDEADLK as vcpureq_pause().  Ordering as
 * vcpureq_pause().  Any thread; blocks (at most until @dl); not
 * async-signal-safe.
 */
int vcpureq_pause_wait(struct vcpureq_vm *vm, const uint64_t *mask,
		       size_t mask_bits, const struct vcpureq_deadline *dl);
/*
 * Undo one pause of each vCPU of @mask (NULL: all); a vCPU whose last pause
 * is undone leaves its parking at once (one futex wake each, no hand-off
 * through a lock).  -EINVAL (nothing resumed) if a target is not paused.
 * Each target's count is taken with a CAS that never goes below zero, so
 * of two calls resuming one pause exactly one succeeds (the other gets
 * -EINVAL).  All or nothing without a lock: the targets are taken in
 * index order and, if one is found not paused (a racing resume took its
 * last pause), the pauses this call took are given back before anyone is
 * woken.  A concurrent observer may see such a given-back count at 0 for
 * that moment (vcpureq_vcpu_paused() false), and the vCPU may leave its
 * parking in it; the give-back makes the PAUSE request again and kicks
 * it, so it parks again at its next entry.
 * Release: what the caller wrote before is visible to the resumed vCPU.
 * Any thread; never blocks; async-signal-safe.
 */
int vcpureq_resume(struct vcpureq_vm *vm, const uint64_t *mask, size_t mask_bits);
/* Whether the vCPU is paused (a pause in force) and parked (its thread
 * waits in its parking).  Any thread; never block; async-signal-safe;
 * relaxed loads: no ordering (for tests and monitoring; vcpureq_pause()'s
 * return is what orders a parked vCPU's work before the caller's). */
bool vcpureq_vcpu_paused(const struct vcpureq_vcpu *vcpu);
bool vcpureq_vcpu_parked(const struct vcpureq_vcpu *vcpu);

/* A function run on a vCPU's thread, outside guest mode. */
typedef int (*vcpureq_work_fn)(struct vcpureq_vcpu *vcpu, void *arg);

/*
 * Run @fn(@vcpu, @arg) on the vCPU's thread, outside guest mode, and
 * return when it has run, with its result in *@result (may be NULL).
 * Work items run in FIFO order per vCPU (the order in which their calls
 * were made, across callers), before the request handler; they never
 * coalesce.  From the vCPU's own thread outside guest mode it runs inline
 * (so a function may call it again); @fn may queue more work.  The item is
 * queued with a request (WORK) and a kick, so a vCPU asleep in
 * vcpureq_vcpu_block() is woken for it and one in guest mode exits.  A
 * paused vCPU runs it in its parking, without leaving the pause (it runs
 * no guest code and stays parked for every pauser): how a VMM reads or
 * writes a paused vCPU's registers on the vCPU's own thread (QEMU's
 * run_on_cpu() on a stopped vCPU).
 * Returns 0, or -ECANCELED (*@result too) if the VM died or was destroyed
 * before it ran, or if the vCPU thread that took it exited
 * (pthread_exit() or cancellation inside a work function: the items it
 * had taken are completed with -ECANCELED as it unwinds), -EIO if the VM
 * is already dead (nothing queued), -EDEADLK from the vCPU's own thread
 * in guest mode, or from a vCPU thread when it would close a cycle of
 * run-on-vCPU waits (vCPU 0's thread waiting on vCPU 1 whose thread waits
 * on vCPU 0, or longer: of racing cycle-closers at least one is refused;
 * nothing is queued, @fn does not run).  A vCPU thread waiting here counts
 * as parked for a pause (it parks at its next entry).  At VM_DEAD, items
 * queued to a vCPU with no bound thread are cancelled by
 * vcpureq_vm_dead()'s caller (or by the unbind, or by a push that comes
 * later), not left for the destroy.  Ordering: what the caller
 * wrote before happens before @fn runs; what @fn did happens before the
 * return.  Any thread; blocks until the vCPU thread runs it; not
 * async-signal-safe (it waits for another thread, which may be the one it
 * interrupted).
 */
int vcpureq_run_on_vcpu(struct vcpureq_vcpu *vcpu, vcpureq_work_fn fn,
			void *arg, int *result);
/*
 * The same without waiting (a paused vCPU runs it parked, as above):
 * @done(@arg, result) is called after @fn ran
 * (on the vCPU thread), or with -ECANCELED if it never will (at VM_DEAD on
 * the vCPU thread; on a thread that exits inside a work function; on
 * vcpureq_vm_dead()'s thread for a vCPU with no bound thread; or from
 * vcpureq_vm_destroy()'s thread for items no vCPU thread took).  @done may be NULL.  Allocates the item: -ENOMEM.
 * Ordering: what the caller wrote before happens before @fn runs (release
 * CAS on the vCPU's queue, acquire exchange where the vCPU takes it); @done
 * runs after @fn on the same thread.  Any thread; never blocks; not
 * async-signal-safe (malloc).
 */
int vcpureq_run_on_vcpu_async(struct vcpureq_vcpu *vcpu, vcpureq_work_fn fn,
			      void (*done)(void *arg, int result), void *arg);

/*
 * vcpureq_vcpu_block() with a deadline (@when absolute, CLOCK_MONOTONIC;
 * NULL: none): -ETIMEDOUT if none of the wake conditions came by then
 * (nothing is consumed); -EINVAL (not blocked) for a negative
 * @when->tv_sec or a @when->tv_nsec outside [0, 999999999].  vCPU thread only; blocks, at most until @when;
 * not async-signal-safe.  Ordering as vcpureq_vcpu_block().
 */
int vcpureq_vcpu_block_deadline(struct vcpureq_vcpu *vcpu,
				const struct timespec *when);

enum vcpureq_dump_format {
	VCPUREQ_DUMP_TEXT = 0,
	VCPUREQ_DUMP_JSON = 1,
};

/*
 * Write every counter of the VM: per vCPU (struct vcpureq_stats) and per
 * request number (made, handled, signals sent for it, WAIT targets waited
 * for; kicks without a request under "no-request"), as text or as one
 * JSON object.  -EINVAL bad format; -EIO a write error.  Any thread; may
 * block (stdio); not async-signal-safe (stdio).  Ordering: relaxed loads of
 * each counter (a snapshot, not an atomic view; see the counters below).
 */
int vcpureq_vm_dump_stats(const struct vcpureq_vm *vm, FILE *f,
			  enum vcpureq_dump_format format);

/* The VM-wide counters of one request number (what the dump shows). */
struct vcpureq_request_stats {
	uint64_t made;     /* bits set by make, over every vCPU (a make
			      that found the bit set counts too) */
	uint64_t handled;  /* vcpureq_check_request() returning 1 */
	uint64_t signals;  /* kick signals sent by its requests */
	uint64_t waits;    /* WAIT targets its requests waited for */
};

/*
 * Copy the counters of request number @req (its low 8 bits; the flag
 * bits are ignored, so VCPUREQ_ARCH_REQ(n) and the constants work as
 * they are), or, with VCPUREQ_REQUEST_NO_ACTION set, of the kicks made
 * without a request (vcpureq_vcpu_kick(), NO_ACTION requests such as
 * VCPUREQ_REQ_OUTSIDE_GUEST_MODE), into @out of @size bytes (pass
 * sizeof(*out): the struct may grow at its end; a larger size than this
 * library's gets zeros past the fields it knows).  -EINVAL for a number
 * above 63, NULL @out or a size below the first version's.  Any thread;
 * never blocks; async-signal-safe.  Ordering: relaxed loads (a snapshot,
 * not an atomic view: the counters of one request may be read across
 * another thread's increments).
 */
int vcpureq_vm_request_stats(const struct vcpureq_vm *vm, unsigned int req,
			     struct vcpureq_request_stats *out, size_t size);

/*
 * Set every counter of the VM to 0: each vCPU's (struct vcpureq_stats,
 * but halt_poll_ns, the current halt-poll window, a state) and each
 * request number's.  For a VMM that samples rates per interval.  Any
 * thread; never blocks; async-signal-safe.  Ordering: relaxed stores, one
 * counter at a time: not an atomic reset.  An increment racing with it
 * may land before its counter's store (lost) or after (kept), so a
 * snapshot taken after a reset under traffic can show counts that do not
 * add up with each other (e.g. handled above made) by the operations in
 * flight; reset a quiet VM for exact counts.
 */
int vcpureq_vm_reset_stats(struct vcpureq_vm *vm);

/* ---------------------------------------------------------------------- */
/*
 * Trace: a timeline of what the vCPUs and their requesters did, for a VMM
 * author chasing a slow pause or a stuck vCPU (docs/trace.md).
 *
 * While a trace runs, every vCPU-side step (guest entry and exit, entry
 * aborted by the final check, lockless walk, block and wake-up, request
 * handled or cleared, parked, run-on-vCPU item run) and every
 * requester-side step (request made, the kick's decision for each target,
 * signal sent, WAIT begin / acknowledgement / end, pause, resume, work
 * queued) is written with a CLOCK_MONOTONIC timestamp, the calling thread's
 * id and the vCPU index into a lock-free ring buffer: one per vCPU (events
 * about a vCPU, whichever thread records them) and one for the VM (events
 * of a whole call, such as a broadcast's WAIT).  A full ring overwrites its
 * oldest events (a flight recorder) and counts them lost.
 *
 * Off (the default) it costs one relaxed load and a predicted branch per
 * step.  Recording is lock-free and async-signal-safe (a requester may be
 * a signal handler).  The rings are allocated by the first
 * vcpureq_trace_start() (and for vCPUs added while tracing) and freed by
 * vcpureq_vm_free(): about (ring size x 40) bytes per vCPU, plus one ring.
 */

struct vcpureq_trace_opts {
	size_t size;             /* sizeof(struct vcpureq_trace_opts) */
	/* Events per ring, a power of two from 64 to 2^24; 0: 8192.  Fixed
	 * by the first vcpureq_trace_start() of the VM. */
	unsigned int ring_events;
};
#define VCPUREQ_TRACE_OPTS_INIT { sizeof(struct vcpureq_trace_opts), 0 }

/*
 * Start recording (@opts NULL: the defaults), into emptied rings.
 * -EBUSY if already recording, -EINVAL for a bad ring size or one
 * different from the first start's, -ENOMEM.  Ordering: a step that begins
 * after this returns is recorded (the enable is a release store that every
 * recorder's acquire load of it pairs with); one that is
 * under way may or may not be.  Any thread; may block (allocation, a lock
 * shared with vCPU creation); not async-signal-safe.
 */
int vcpureq_trace_start(struct vcpureq_vm *vm,
			const struct vcpureq_trace_opts *opts);
/*
 * Stop recording; what was recorded stays until the next start.  A step
 * under way on another thread may still record after this returns.
 * -EINVAL if not recording.  Any thread; never blocks but on the trace's
 * lock (held by start, stop and the export only); not async-signal-safe.
 * Ordering: a relaxed store of the enable under that lock (recorders that
 * still see it on finish their event; nothing waits for them).
 */
int vcpureq_trace_stop(struct vcpureq_vm *vm);

/*
 * Write the events recorded since the last start to @f in the Chrome
 * trace-event JSON format, which Perfetto (ui.perfetto.dev) and
 * chrome://tracing open: one track per vCPU thread and per requester
 * thread; guest-mode instances, blocks, parkings, lockless walks and work
 * items as slices on the vCPU's track; request calls, WAITs, pauses and
 * resumes as slices on the requester's; every request as a flow from the
 * make to the check that handled it (docs/trace.md gives every event).
 * Timestamps are CLOCK_MONOTONIC in microseconds (with nanosecond
 * digits), as perf and the kernel's tracepoints use.  A slice already
 * under way at the start (a guest-mode instance of a running vCPU, a
 * block, a call in progress) begins at the start time, marked
 * "before_start".  An empty trace gives a valid file of 0 events.  Works while
 * recording (each event is read whole or skipped); stop first for a
 * complete picture.  Returns the number of events written, -EINVAL if no
 * trace was ever started, -ENOMEM, -EIO for a write error.  Any thread;
 * may block (stdio, allocation); not async-signal-safe.  Ordering: each
 * event is read under its sequence number (acquire, pairing with the
 * recorder's release of it, then an acquire fence before the re-read), so
 * an event is written whole or not at all.
 */
long vcpureq_trace_write_json(struct vcpureq_vm *vm, FILE *f);

/* What a trace holds (vcpureq_trace_counts()). */
struct vcpureq_trace_counts {
	uint64_t recorded;   /* events written into the rings since start */
	uint64_t lost;       /* of those, overwritten by a full ring, or
				dropped by a recorder that met another on
				the same slot */
	unsigned int ring_events;
	bool recording;
};
/*
 * Copy the trace's counts into @out, of @size bytes (pass sizeof(*out)).
 * -EINVAL if no trace was ever started or @out is NULL.  Any thread;
 * never blocks; async-signal-safe; relaxed (a snapshot).
 */
int vcpureq_trace_counts(const struct vcpureq_vm *vm,
			 struct vcpureq_trace_counts *out, size_t size);

/* ---------------------------------------------------------------------- */
/* Interrupt mailbox (kernel: posted interrupts, PIR + ON). */

/*
 * Post interrupt @vector (0..255): set it in the PIR bitmap, then the ON bit
 * with a fully ordered RMW before reading the mode, and kick (no request
 * bit: ON takes its place).  The vCPU syncs PIR after publishing
 * IN_GUEST_MODE and its fence, and injects with KVM_INTERRUPT when the guest
 * accepts it (interrupt window).  arm64 (no in-kernel vGIC): the vCPU's IRQ
 * line (KVM_IRQ_LINE, KVM_ARM_IRQ_TYPE_CPU, the vCPU's id taken as KVM's
 * vCPU index: create vCPUs with ids 0, 1, ... in order) is high while a
 * vector is pending; the guest acknowledges at the VMM's interrupt
 * controller, whose handler takes the vector with
 * vcpureq_vcpu_take_interrupt().  Wakes a sleeper.  For the user-space
 * irqchip only: -ENOTSUP for a vCPU with an in-kernel LAPIC (see
 * vcpureq_vcpu_lapic_in_kernel()).  Returns 1 if a signal was sent, 0 if
 * not, -EINVAL.  Any thread; never blocks; async-signal-safe.
 */
int vcpureq_post_interrupt(struct vcpureq_vcpu *vcpu, unsigned int vector);
/*
 * Thread backend (or a VMM that injects itself): take the highest pending
 * vector, or -ENOENT if none.  vCPU thread only; never blocks; not
 * async-signal-safe.  Ordering: it syncs PIR into the IRR first (acquire
 * exchange of ON, pairing with the release of ON in
 * vcpureq_post_interrupt()), so a vector whose post has set ON is seen.
 */
int vcpureq_vcpu_take_interrupt(struct vcpureq_vcpu *vcpu);

/* ---------------------------------------------------------------------- */
/*
 * Counters (relaxed atomics; a snapshot, not an atomic view).  The
 * requester-side counts are bumped before the action they count
 * (requests_made before the request bit's release, signals_sent before the
 * signal, wakeups before the futex wake), so the vCPU thread, once it has
 * seen the request, taken the signal or woken, reads counts that include
 * it.  Other threads may read a count ahead of its action.
 */

struct vcpureq_stats {
	uint64_t requests_made;     /* bits set by make (NO_ACTION excluded) */
	uint64_t requests_handled;  /* check_request() returning 1 */
	uint64_t kicks;             /* kicks of this vCPU (incl. broadcast) */
	uint64_t signals_sent;      /* kick signals sent to it */
	uint64_t signals_coalesced; /* kicks that found it EXITING: the
				       signal already on its way sufficed */
	uint64_t wakeups;           /* futex wake-ups of it in block */
	uint64_t acks_waited;       /* WAIT requesters that waited on it */
	uint64_t entries;           /* guest entries (KVM_RUN / callback) */
	uint64_t entry_aborts;      /* entries aborted by the final check */
	uint64_t exits;             /* guest-mode instances ended */
	uint64_t kicked_exits;      /* exits with -EINTR / KICKED */
	uint64_t spurious_exits;    /* kicked exits with nothing pending: a
				       stale signal, or a NO_ACTION kick
				       (OUTSIDE_GUEST_MODE) */
	uint64_t blocks;            /* vcpureq_vcpu_block() calls */
	uint64_t halt_poll_hits;    /* blocks that ended while polling */
	uint64_t interrupts_posted;
	uint64_t interrupts_injected;
	uint64_t foreign_exits;     /* EINTR exits no kick caused (one of the
				       VMM's own signals) */
	uint64_t halt_poll_ns;      /* the adaptive halt-poll window now (ns),
				       0..opts.halt_poll_ns: not a count */
	uint64_t ack_rechecks;      /* WAIT requesters' sleeps on its ack that
				       ended at their 20 ms recheck (it was
				       held in guest mode that long) */
	uint64_t acks_at_recheck;   /* acks a WAIT requester found at such a
				       recheck, not woken by the exit: late */
};

/*
 * Copy the counters into @out, of @size bytes (pass sizeof(*out): the
 * struct may grow at its end; a caller built against an older, shorter
 * struct gets the fields it knows).  -EINVAL for NULL or a size below the
 * first version's.  Any thread; never blocks; async-signal-safe.
 */
int vcpureq_vcpu_stats(const struct vcpureq_vcpu *vcpu,
		       struct vcpureq_stats *out, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* VCPUREQ_VCPUREQ_H */
