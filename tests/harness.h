/* SPDX-License-Identifier: MIT */
/*
 * Test, demo and benchmark support: a VM with real guest code (KVM backend)
 * or the equivalent callbacks (thread backend), vCPU threads that run a
 * simple VMM loop, and a tiny test runner (one case per process).
 */
#ifndef VCPUREQ_HARNESS_H
#define VCPUREQ_HARNESS_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vcpureq/vcpureq.h"

enum h_prog {
	H_SPIN, /* spins in guest mode until kicked */
	H_OUT,  /* exits to the VMM (I/O) every iteration */
	H_HALT, /* halts every iteration: the VMM blocks */
	H_IRQ,  /* sti; hlt: takes posted interrupts (vector 0x20) */
	H_IN,   /* in al,0x12; store; out 0x13; hlt */
	H_PIC,  /* programs the in-kernel PIC; sti; hlt (in-kernel halt) */
};

#define H_IRQ_VECTOR 0x20
#define H_PIC_VECTOR 0x28 /* IRQ0 through the in-kernel PIC */
#define H_PORT_OUT 0x10
#define H_PORT_IRQ 0x11
#define H_PORT_IN 0x12
#define H_PORT_IN_REPORT 0x13
/* The in-kernel irqchip's input the H_PIC guest takes, as KVM_IRQ_LINE's
 * irq: x86 IRQ0 of the PIC (vector H_PIC_VECTOR), arm64 SPI 32 of the
 * vGICv3 (tests/harness_*.c). */
extern const uint32_t h_irqchip_line;
/* Whether a kick out of the in-kernel halt ends it: x86 false (KVM keeps
 * the vCPU halted across the exit), arm64 true (KVM has stepped past the
 * wfi; the guest sees a wake-up with no interrupt, which wfi allows). */
extern const bool h_kick_ends_inkernel_halt;

struct h_vm;

/* What the VMM loop of a vCPU thread does on its events; all optional. */
struct h_hooks {
	/* After each guest exit handed to the VMM (KVM: exit reason; thread:
	 * the program).  Return false to stop the loop. */
	bool (*on_exit)(struct h_vm *h, unsigned int id, int reason);
	/* Run returned VCPUREQ_RUN_REQUEST: handle them.  false: stop. */
	bool (*on_request)(struct h_vm *h, unsigned int id);
	/* Block returned (reasons). false: stop. */
	bool (*on_wake)(struct h_vm *h, unsigned int id, int why);
};

struct h_vcpu {
	struct h_vm *h;
	unsigned int id;
	pthread_t thread;
	_Atomic int prog;           /* enum h_prog, may change at run time */
	_Atomic int started;
	_Atomic int stop;           /* ask the loop to leave (with a request) */
	_Atomic int run_ret;        /* last vcpureq_vcpu_run() error */
	_Atomic uint64_t vmm_exits; /* exits seen by the VMM loop */
	_Atomic uint64_t tb_iters;  /* thread backend: guest iterations */
	_Atomic uint64_t tb_irqs;   /* thread backend: interrupts taken */
	_Atomic uint32_t in_value;  /* H_IN: value the VMM supplies */
	_Atomic int finished;
	_Atomic pid_t tid;          /* the vCPU thread's, once bound */
};

/* Room for vCPUs added after create (h_add_vcpu). */
#define H_CAP 64

/* h_vm_create_cfg() flags (KVM backend). */
#define H_F_IRQCHIP 1u /* KVM_SET_TSS_ADDR + KVM_CREATE_IRQCHIP first */
#define H_F_ADOPT 2u   /* the harness makes the VM and vCPU fds; adopted */
#define H_F_SPLIT_IRQCHIP 4u /* KVM_CAP_SPLIT_IRQCHIP: in-kernel LAPIC only */

struct h_vm {
	struct vcpureq_vm *vm;
	enum vcpureq_backend backend;
	unsigned int flags;
	/* Thread backend: the guest callback, for the VMM-owned loop. */
	int (*guest)(struct vcpureq_vcpu *, void *);
	void *guest_opaque;
	/* H_F_ADOPT: what the harness (the VMM) opened and closes itself. */
	int own_kvm_fd, own_vm_fd;
	int irqchip_fd; /* arm64 H_F_IRQCHIP: the vGIC device */
	int own_vcpu_fd[H_CAP];
	void *own_run[H_CAP];
	size_t own_run_size;
	uint8_t *mem;
	size_t mem_size;
	unsigned int nr;
	struct h_vcpu *vcpus;
	struct h_hooks hooks;
	void *user;
};

/* Request used by h_stop_all(): makes the VMM loop return. */
#define H_REQ_STOP VCPUREQ_ARCH_REQ(55)

/*
 * Create a VM of @nr vCPUs all running @prog.  @opts may be NULL; its
 * nr_vcpus/backend/guest are filled in.  Returns 0, 77 if the KVM backend
 * was asked for and /dev/kvm is really absent (after printing SKIP and the
 * reason), or -errno.
 */
int h_vm_create(struct h_vm *h, enum vcpureq_backend be, unsigned int nr,
		enum h_prog prog, const struct vcpureq_vm_opts *opts);
/* The split lifecycle: vcpureq_vm_open() (on a VM fd the harness made
 * itself with H_F_ADOPT), VM-wide setup (H_F_IRQCHIP), then @nr vCPUs added
 * one by one with ids @ids (NULL: 0..nr-1), created or adopted; nr <= H_CAP.
 * Without flags and ids it is h_vm_create(). */
int h_vm_create_cfg(struct h_vm *h, enum vcpureq_backend be, unsigned int nr,
		    enum h_prog prog, const struct vcpureq_vm_opts *opts,
		    unsigned int flags, const unsigned long *ids);
/* Make a vCPU fd the test created itself runnable, as the harness does
 * for H_F_ADOPT (x86: nothing; arm64: KVM_ARM_VCPU_INIT).  0 or -errno. */
int h_vcpu_init(struct h_vm *h, int vcpu_fd);
/* Add one more vCPU (index h->nr) with @id, running @prog. */
int h_add_vcpu(struct h_vm *h, unsigned long id, enum h_prog prog);
void h_vm_destroy(struct h_vm *h);
/* Point vCPU @id at @prog (vCPU not running: before start or from its own
 * thread). */
int h_set_prog(struct h_vm *h, unsigned int id, enum h_prog prog);
/* Guest physical address of a program's first instruction. */
uint32_t h_prog_gpa(enum h_prog prog);
/* Guest-visible counters of a vCPU: iterations and interrupts taken. */
uint64_t h_guest_iters(struct h_vm *h, unsigned int id);
/* KVM backend: the guest memory word that h_guest_iters() reads (the
 * guest loop's counter), for a benchmark floor whose threads stand in for
 * the guest; NULL on the thread backend. */
uint32_t *h_guest_counter(struct h_vm *h, unsigned int id);
uint64_t h_guest_irqs(struct h_vm *h, unsigned int id);
/* H_IN: the register its read went to (x86 AL, arm64 w10) and the PC,
 * read from KVM (0 or -errno); the read instruction's length. */
int h_in_regs(struct h_vm *h, unsigned int id, uint64_t *value, uint64_t *pc);
extern const unsigned int h_in_insn_len;
/* Byte the H_IN program stored. */
uint8_t h_guest_in_byte(struct h_vm *h, unsigned int id);

/* The port of an I/O exit handed to the hooks (@reason KVM_EXIT_IO: the
 * x86 port; arm64: the MMIO report address's, tests/guest_arm64.S), else
 * -1. */
int h_exit_port(struct h_vm *h, unsigned int id, int reason);

/* One vcpureq_vcpu_run(), or the same over the enter/exit pair with the
 * harness's own KVM_RUN when $VCPUREQ_TEST_LOOP=own. */
int h_run(struct h_vm *h, struct vcpureq_vcpu *v);

/* Start the VMM loop thread of every vCPU (or one).  The loop: bind; run;
 * on exit: I/O continues, HLT blocks; hooks; until stopped or -EIO. */
int h_start(struct h_vm *h);
int h_start_one(struct h_vm *h, unsigned int id);
/* Stop every loop (request H_REQ_STOP with WAIT... then UNBLOCK) and join. */
int h_stop_all(struct h_vm *h);
/* Join loops that end by themselves (e.g. after VM_DEAD). */
void h_join_all(struct h_vm *h);

/* Wait until @pred(h, id) or timeout (ms): returns true if it held. */
bool h_wait_until(bool (*pred)(struct h_vm *, unsigned int), struct h_vm *h,
		  unsigned int id, unsigned int timeout_ms);
/* In guest mode and past the final request check of the instance: a
 * request made now needs a kick (harness.c says how that is read). */
bool h_in_guest(struct h_vm *h, unsigned int id);
/* The system call thread @tid of this process is in (its number), -1 if
 * none (running) or unknown (/proc/self/task/TID/syscall). */
long h_thread_syscall(pid_t tid);
/* Thread @tid is in a futex wait; true also when that cannot be told (no
 * thread id, no /proc syscall file). */
bool h_in_futex_wait(pid_t tid);
/* Asleep in vcpureq_vcpu_block(), past its check of the wake conditions
 * (in the futex wait): harness.c says why is_blocking alone is not that. */
bool h_sleeping(struct h_vm *h, unsigned int id);
/* In guest mode and past its first 100 guest iterations. */
bool h_spinning(struct h_vm *h, unsigned int id);
/* The counters of vCPU index @id. */
struct vcpureq_stats h_stats(struct h_vm *h, unsigned int id);
/* Wait until *@p >= @want or timeout (ms): returns true if it held. */
bool h_wait_ge(_Atomic uint64_t *p, uint64_t want, unsigned int timeout_ms);

/* The kick mechanism the tests run with: $VCPUREQ_TEST_KICK ("sigmask" or
 * "immediate_exit"; CTest registers each KVM case once per mechanism), else
 * the library's default. */
enum vcpureq_kick_mechanism h_kick_mechanism(void);
/* Whether the KVM programs run as the native guest (x86:
 * VCPUREQ_TEST_GUEST=native, tests/guest_native.S: 64-bit, the spin and
 * exit loops at CPL3); always false elsewhere. */
bool h_native_guest(void);

/* The factor of the tests' hang bounds (HANG_MS): $VCPUREQ_TEST_TIME_SCALE
 * (make test-arm64 sets 3: emulated arm64 on a loaded host), else 1. */
int h_time_scale(void);
uint64_t h_now_ns(void);
/* A CLOCK_MONOTONIC deadline @ms from now (struct vcpureq_deadline.when). */
struct timespec h_in_ms(long ms);
void h_sleep_us(unsigned int us);

/* ---- the test runner ---- */
typedef int (*h_case_fn)(enum vcpureq_backend be);
struct h_case {
	const char *name;
	h_case_fn fn;
	int both; /* runs on both backends */
};
void h_register(const char *name, h_case_fn fn, int both);

/* A case that needs KVM or runs on one backend: TEST(name);
 * a backend-independent case: TEST_BOTH(name) -> name.kvm and name.thread. */
#define TEST(name)                                                        \
	static int name(enum vcpureq_backend be);                         \
	__attribute__((constructor)) static void reg_##name(void)        \
	{                                                                 \
		h_register(#name, name, 0);                               \
	}                                                                 \
	static int name(enum vcpureq_backend be)
#define TEST_BOTH(name)                                                   \
	static int name(enum vcpureq_backend be);                         \
	__attribute__((constructor)) static void reg_##name(void)        \
	{                                                                 \
		h_register(#name, name, 1);                               \
	}                                                                 \
	static int name(enum vcpureq_backend be)

#define H_SKIP 77

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: CHECK failed: %s (errmsg: %s)\n", \
				__FILE__, __LINE__, #cond, vcpureq_errmsg()); \
			return 1;                                           \
		}                                                           \
	} while (0)
#define CHECK_EQ(a, b)                                                      \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		if (a_ != b_) {                                             \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld (errmsg: %s)\n", \
				__FILE__, __LINE__, #a, a_, #b, b_,         \
				vcpureq_errmsg());                          \
			return 1;                                           \
		}                                                           \
	} while (0)

/* Create the VM or propagate SKIP/failure from a case. */
#define H_VM(h, be, nr, prog, opts)                                         \
	do {                                                                \
		int r_ = h_vm_create((h), (be), (nr), (prog), (opts));      \
		if (r_ == H_SKIP)                                           \
			return H_SKIP;                                      \
		if (r_) {                                                   \
			fprintf(stderr, "h_vm_create: %d (%s)\n", r_,       \
				vcpureq_errmsg());                          \
			return 1;                                           \
		}                                                           \
	} while (0)


#define H_VM_CFG(h, be, nr, prog, opts, flags, ids)                         \
	do {                                                                \
		int r_ = h_vm_create_cfg((h), (be), (nr), (prog), (opts),   \
					 (flags), (ids));                   \
		if (r_ == H_SKIP)                                           \
			return H_SKIP;                                      \
		if (r_) {                                                   \
			fprintf(stderr, "h_vm_create_cfg: %d (%s)\n", r_,   \
				vcpureq_errmsg());                          \
			return 1;                                           \
		}                                                           \
	} while (0)

#endif /* VCPUREQ_HARNESS_H */
