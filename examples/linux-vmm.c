/* SPDX-License-Identifier: MIT */
/*
 * linux-vmm: an arm64 VMM on vcpureq that boots a real Linux guest.
 *
 *   linux-vmm [--test] [--trace FILE] [--cpus N] IMAGE INITRD [ARGS...]
 *
 * Built the way docs/vmm.md says a production VMM is: it creates its own
 * VM fd, guest memory and in-kernel vGICv3, creates each vCPU itself
 * (KVM_ARM_VCPU_INIT with PSCI 0.2; the secondaries powered off, started
 * by the guest with PSCI CPU_ON, which KVM handles) and has vcpureq adopt
 * it; one thread per vCPU runs its own vcpureq_vcpu_enter() / KVM_RUN /
 * vcpureq_vcpu_exit() loop.  The guest: an arm64 Linux Image, an
 * initramfs, and a device tree generated here with libfdt (memory, cpus,
 * PSCI, GICv3, arch timer, a PL011 and its clock, chosen).  Devices, on
 * MMIO exits: the PL011 (data register out, flags "TX and RX empty", the
 * PrimeCell ids; no interrupt) and a "witness" page (below).  The guest's
 * poweroff (PSCI SYSTEM_OFF) reaches us as KVM_EXIT_SYSTEM_EVENT and ends
 * the VM with VM_DEAD: every vCPU loop ends with -EIO.
 *
 * --test (make test-linux-guest) adds a control thread doing to the live
 * guest what a VMM does, and checks it:
 *   - pauses all vCPUs (vcpureq_pause) and resumes them, for 0.1 to 3 s:
 *     during the boot until /init runs (at most 16 times), then 20 times
 *     with the witness running;
 *   - while paused, reads each vCPU's registers (KVM_GET_ONE_REG) twice:
 *     they must be equal; then once more with vcpureq_run_on_vcpu(), on
 *     the vCPU's own thread, which runs the item in its parking: it must
 *     still be paused and parked, and find the same values;
 *   - a broadcast WAIT request per cycle; a requester thread making
 *     requests and a worker thread running run-on-vCPU items on random
 *     vCPUs the whole time;
 *   - the guest's own witness (tools/linux-guest/witness.c: one thread
 *     pinned per guest CPU, reading CLOCK_MONOTONIC and the virtual
 *     counter) reports, through the witness page, every gap it saw in its
 *     own clock readings: each pause taken while it runs must lie inside
 *     a gap of every guest CPU (so the CPUs were stopped together, for at
 *     least the pause), and the gaps of consecutive pauses must be
 *     distinct (the guest ran between them);
 *   - no RCU stall, soft lockup, clocksource or other kernel warning on
 *     the guest console (the guest's /init also greps its dmesg, of every
 *     level, and prints what it finds); the guest powers off; every vCPU
 *     loop ends;
 *   - --trace FILE: the vcpureq trace of the whole run (nothing lost),
 *     for tools/trace-check.py.
 * Without --test it boots the guest and runs it until it powers off.
 * ARGS replaces "quiet" in the kernel's command line.
 * Exit 0: booted (and with --test, every check passed); 77: no /dev/kvm;
 * 1: failure (named on stderr).  arm64 only.
 *
 * The witness page (WIT_BASE, outside memory and the device tree; the
 * witness maps it through /dev/mem), 64-bit registers:
 *   0x00 R  command: 1 once the VMM wants the witness to stop, else 0
 *   0x08 W  ready: the number of witness threads, each on its CPU
 *   0x10 W  heartbeat: the CPU of the thread (about every 20 ms)
 *   0x18 W  record a    0x20 W  record b    0x30 W  record c
 *   0x28 W  commit the record: kind << 8 | cpu; kind 1, a gap: a, b the
 *           virtual counter before and after it, c its CLOCK_MONOTONIC
 *           length in ns; kind 2, a thread's summary: a readings, b the
 *           largest gap in ns, c the number of gaps recorded
 *   0x40 W  done: all records sent
 * Time is compared on the arm64 virtual counter: the guest's reads
 * CNTVCT_EL0 minus KVM's per-VM offset, which the VMM measures with
 * KVM_GET_ONE_REG(KVM_REG_ARM_TIMER_CNT) against its own CNTVCT_EL0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libfdt.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vcpureq/vcpureq.h>

#define MAX_VCPUS 8
#define RAM_BASE 0x40000000ull
#define RAM_SIZE (256ull << 20)
#define INITRD_GPA 0x48000000ull
#define DTB_GPA (RAM_BASE + RAM_SIZE - (2ull << 20))
#define GICD_BASE 0x08000000ull
#define GICR_BASE 0x080a0000ull /* + 0x20000 per vCPU */
#define UART_BASE 0x09000000ull
#define WIT_BASE 0x0a000000ull
#define PAGE 0x1000ull
#define PH_GIC 1
#define PH_CLK 2

/* Requests of this VMM: a note from the requester thread, and the
 * control thread's broadcast WAIT. */
#define REQ_NOTE VCPUREQ_ARCH_REQ(0)
#define REQ_SYNC VCPUREQ_ARCH_REQ_FLAGS(1, VCPUREQ_REQUEST_WAIT)

#define NR_REGS 36 /* x0..x30, sp, pc, pstate, sp_el1, elr_el1 */

struct vcpu {
	unsigned int index;
	int fd;
	struct kvm_run *run;
	struct vcpureq_vcpu *req;
	pthread_t thread;
	_Atomic uint64_t notes, syncs, items; /* handled here */
	_Atomic uint64_t heartbeats;          /* witness heartbeats */
	_Atomic bool ended;
	int end;                              /* the loop's last result */
};

struct gap { uint64_t a, b, ns; };

static struct {
	unsigned int nr;
	bool test;
	struct vcpureq_vm *vm;
	struct vcpu vcpus[MAX_VCPUS];
	uint8_t *ram;
	double t0;
	_Atomic bool stop_witness;
	_Atomic int witness_ready;   /* threads, once ready */
	_Atomic bool witness_done;
	_Atomic bool init_seen;
	_Atomic bool powered_off;
	_Atomic bool quit;            /* the helper threads' end */
	_Atomic bool control_done;    /* the control thread is through */
	pthread_mutex_t lock;         /* console, records, failures */
	char line[512];
	size_t len;
	unsigned int warnings, failures, lines;
	bool dmesg_checked;           /* the guest's /init grepped dmesg */
	uint64_t rec_a, rec_b, rec_c;
	struct gap gaps[MAX_VCPUS][512];
	unsigned int nr_gaps[MAX_VCPUS];
	uint64_t readings[MAX_VCPUS], max_gap[MAX_VCPUS];
	bool summary[MAX_VCPUS];
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t cntvct(void)
{
	uint64_t v;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
	return v;
}

static uint64_t cntfrq(void)
{
	uint64_t v;

	__asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v));
	return v;
}

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&g.lock);
	printf("[%7.3f] ", now() - g.t0);
	vprintf(fmt, ap);
	pthread_mutex_unlock(&g.lock);
	va_end(ap);
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&g.lock);
	g.failures++;
	fprintf(stderr, "[%7.3f] FAIL: ", now() - g.t0);
	vfprintf(stderr, fmt, ap);
	pthread_mutex_unlock(&g.lock);
	va_end(ap);
}

#define DIE(...) do { fail(__VA_ARGS__); exit(1); } while (0)

/* ---- the guest console: a PL011 on MMIO exits ------------------------ */

/* Kernel messages a healthy guest never prints (quiet: warnings only). */
static const char *const bad_words[] = {
	"rcu: INFO", "stall", "soft lockup", "hard LOCKUP", "clocksource",
	"timekeeping watchdog", "BUG:", "Oops", "WARNING:", "Call trace",
	"Kernel panic",
};

static void console_line(const char *s)
{
	printf("[%7.3f]   guest| %s\n", now() - g.t0, s);
	for (size_t i = 0; i < sizeof(bad_words) / sizeof(bad_words[0]); i++)
		if (strstr(s, bad_words[i])) {
			g.warnings++;
			fprintf(stderr, "FAIL: guest console: \"%s\"\n", s);
		}
	if (!g.lines++)
		printf("[%7.3f] milestone: the guest kernel's first console line\n",
		       now() - g.t0);
	if (!strncmp(s, "@@G dmesg:", 10))
		g.dmesg_checked = true;
	if (!strncmp(s, "@@G init", 8))
		atomic_store_explicit(&g.init_seen, true, memory_order_release);
}

static void console_char(uint8_t c)
{
	pthread_mutex_lock(&g.lock);
	if (c == '\n' || g.len == sizeof(g.line) - 1) {
		g.line[g.len] = 0;
		console_line(g.line);
		g.len = 0;
	} else if (c != '\r') {
		g.line[g.len++] = (char)c;
	}
	pthread_mutex_unlock(&g.lock);
}

static uint32_t uart_read(uint64_t off)
{
	static const uint8_t id[8] = { 0x11, 0x10, 0x14, 0x00,
				       0x0d, 0xf0, 0x05, 0xb1 };

	if (off == 0x18)
		return 0x90; /* FR: TXFE | RXFE */
	if (off >= 0xfe0 && off <= 0xffc)
		return id[(off - 0xfe0) / 4];
	return 0;
}

/* ---- the witness page ------------------------------------------------ */

static uint64_t witness_read(uint64_t off)
{
	if (off == 0x00)
		return atomic_load_explicit(&g.stop_witness,
					    memory_order_relaxed);
	return 0;
}

static void witness_write(uint64_t off, uint64_t v)
{
	unsigned int cpu = (unsigned int)(v & 0xff);

	switch (off) {
	case 0x08:
		say("witness: %" PRIu64 " threads running, one per guest CPU\n", v);
		atomic_store_explicit(&g.witness_ready, (int)v,
				      memory_order_release);
		return;
	case 0x10:
		if (cpu < g.nr)
			atomic_fetch_add_explicit(&g.vcpus[cpu].heartbeats, 1,
						  memory_order_release);
		return;
	case 0x40:
		atomic_store_explicit(&g.witness_done, true,
				      memory_order_release);
		return;
	}
	pthread_mutex_lock(&g.lock);
	if (off == 0x18)
		g.rec_a = v;
	else if (off == 0x20)
		g.rec_b = v;
	else if (off == 0x30)
		g.rec_c = v;
	else if (off == 0x28 && cpu < g.nr && (v >> 8) == 1 &&
		 g.nr_gaps[cpu] < 512)
		g.gaps[cpu][g.nr_gaps[cpu]++] =
			(struct gap){ g.rec_a, g.rec_b, g.rec_c };
	else if (off == 0x28 && cpu < g.nr && (v >> 8) == 2) {
		g.readings[cpu] = g.rec_a;
		g.max_gap[cpu] = g.rec_b;
		g.summary[cpu] = true;
	}
	pthread_mutex_unlock(&g.lock);
}

/* ---- vCPU threads ----------------------------------------------------- */

static int handle_requests(struct vcpureq_vcpu *req, void *opaque)
{
	struct vcpu *v = &g.vcpus[vcpureq_vcpu_index(req)];

	(void)opaque;
	if (vcpureq_check_request(REQ_NOTE, req) > 0)
		atomic_fetch_add_explicit(&v->notes, 1, memory_order_relaxed);
	if (vcpureq_check_request(REQ_SYNC, req) > 0)
		atomic_fetch_add_explicit(&v->syncs, 1, memory_order_relaxed);
	return 0;
}

static void mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t a = run->mmio.phys_addr, val = 0;

	if (run->mmio.is_write)
		memcpy(&val, run->mmio.data,
		       run->mmio.len <= 8 ? run->mmio.len : 8);
	if (a >= UART_BASE && a < UART_BASE + PAGE) {
		if (run->mmio.is_write && a == UART_BASE)
			console_char((uint8_t)val);
		else if (!run->mmio.is_write)
			val = uart_read(a - UART_BASE);
	} else if (a >= WIT_BASE && a < WIT_BASE + PAGE) {
		if (run->mmio.is_write)
			witness_write(a - WIT_BASE, val);
		else
			val = witness_read(a - WIT_BASE);
	} /* anything else: writes ignored, reads 0 */
	if (!run->mmio.is_write) /* completes at the next KVM_RUN */
		memcpy(run->mmio.data, &val,
		       run->mmio.len <= 8 ? run->mmio.len : 8);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	int r;

	if (vcpureq_vcpu_bind(v->req))
		DIE("vCPU %u: bind: %s\n", v->index, vcpureq_errmsg());
	for (;;) {
		r = vcpureq_vcpu_enter(v->req);
		if (r == VCPUREQ_RUN_REQUEST)
			continue; /* the handler consumed ours: none left */
		if (r != VCPUREQ_RUN_ENTER)
			break; /* -EIO: VM_DEAD */
		r = ioctl(v->fd, KVM_RUN, 0);
		r = vcpureq_vcpu_exit(v->req, r < 0 ? -errno : 0);
		if (r == VCPUREQ_RUN_AGAIN)
			continue;
		if (r != VCPUREQ_RUN_EXIT)
			break;
		switch (v->run->exit_reason) {
		case KVM_EXIT_MMIO:
			mmio(v);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			say("vCPU %u: KVM_EXIT_SYSTEM_EVENT type %u (%s): VM_DEAD\n",
			    v->index, v->run->system_event.type,
			    v->run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ?
				    "shutdown" : "reset/crash");
			atomic_store_explicit(&g.powered_off, true,
					      memory_order_release);
			vcpureq_vm_dead(g.vm);
			break;
		default:
			fail("vCPU %u: unexpected exit %u\n", v->index,
			     v->run->exit_reason);
			vcpureq_vm_dead(g.vm);
			break;
		}
	}
	v->end = r;
	if (r != -EIO)
		fail("vCPU %u: loop ended with %d: %s\n", v->index, r,
		     vcpureq_errmsg());
	vcpureq_vcpu_unbind(v->req);
	atomic_store_explicit(&v->ended, true, memory_order_release);
	return NULL;
}

/* ---- setup ----------------------------------------------------------- */

#define CORE_REG(field)                                                  \
	(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |           \
	 (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

static int get_reg(int fd, uint64_t id, uint64_t *value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)value };

	return ioctl(fd, KVM_GET_ONE_REG, &reg) < 0 ? -errno : 0;
}

static void set_reg(int fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&value };

	if (ioctl(fd, KVM_SET_ONE_REG, &reg) < 0)
		DIE("KVM_SET_ONE_REG %#" PRIx64 ": %s\n", id, strerror(errno));
}

static void vgic_attr(int dev, uint32_t group, uint64_t attr, void *val)
{
	struct kvm_device_attr a = { .group = group, .attr = attr,
				     .addr = (uintptr_t)val };

	if (ioctl(dev, KVM_SET_DEVICE_ATTR, &a) < 0)
		DIE("vGIC attribute %u/%" PRIu64 ": %s\n", group, attr,
		    strerror(errno));
}

static size_t load(const char *path, uint64_t gpa, uint64_t room)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t done = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		DIE("%s: %s\n", path, strerror(errno));
	if ((uint64_t)st.st_size > room)
		DIE("%s: %lld bytes do not fit in %" PRIu64 "\n", path,
		    (long long)st.st_size, room);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, g.ram + (gpa - RAM_BASE) + done,
				 (size_t)st.st_size - done);

		if (n <= 0)
			DIE("%s: read: %s\n", path, n ? strerror(errno) : "EOF");
		done += (size_t)n;
	}
	close(fd);
	return done;
}

#define FDT(call)                                                        \
	do {                                                             \
		int fdt_err_ = (call);                                   \
		if (fdt_err_)                                            \
			DIE("libfdt: %s: %s\n", #call,                   \
			    fdt_strerror(fdt_err_));                     \
	} while (0)

static void fdt_reg2(void *fdt, uint64_t a, uint64_t s)
{
	fdt64_t cells[2] = { cpu_to_fdt64(a), cpu_to_fdt64(s) };

	FDT(fdt_property(fdt, "reg", cells, sizeof(cells)));
}

/* The device tree, built with libfdt's sequential writer. */
static size_t make_dtb(void *fdt, size_t size, const char *bootargs,
		       uint64_t initrd_end)
{
	char name[64];

	FDT(fdt_create(fdt, (int)size));
	FDT(fdt_finish_reservemap(fdt));
	FDT(fdt_begin_node(fdt, ""));
	FDT(fdt_property_string(fdt, "compatible", "linux,dummy-virt"));
	FDT(fdt_property_u32(fdt, "#address-cells", 2));
	FDT(fdt_property_u32(fdt, "#size-cells", 2));
	FDT(fdt_property_u32(fdt, "interrupt-parent", PH_GIC));

	FDT(fdt_begin_node(fdt, "chosen"));
	FDT(fdt_property_string(fdt, "bootargs", bootargs));
	FDT(fdt_property_string(fdt, "stdout-path", "/pl011@9000000"));
	FDT(fdt_property_u64(fdt, "linux,initrd-start", INITRD_GPA));
	FDT(fdt_property_u64(fdt, "linux,initrd-end", initrd_end));
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "memory@40000000"));
	FDT(fdt_property_string(fdt, "device_type", "memory"));
	fdt_reg2(fdt, RAM_BASE, RAM_SIZE);
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "cpus"));
	FDT(fdt_property_u32(fdt, "#address-cells", 1));
	FDT(fdt_property_u32(fdt, "#size-cells", 0));
	for (unsigned int i = 0; i < g.nr; i++) {
		snprintf(name, sizeof(name), "cpu@%u", i);
		FDT(fdt_begin_node(fdt, name));
		FDT(fdt_property_string(fdt, "device_type", "cpu"));
		FDT(fdt_property_string(fdt, "compatible", "arm,arm-v8"));
		FDT(fdt_property_string(fdt, "enable-method", "psci"));
		FDT(fdt_property_u32(fdt, "reg", i)); /* MPIDR Aff0 */
		FDT(fdt_end_node(fdt));
	}
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "psci"));
	FDT(fdt_property(fdt, "compatible", "arm,psci-0.2\0arm,psci", 22));
	FDT(fdt_property_string(fdt, "method", "hvc"));
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "intc@8000000"));
	FDT(fdt_property_string(fdt, "compatible", "arm,gic-v3"));
	FDT(fdt_property_u32(fdt, "#interrupt-cells", 3));
	FDT(fdt_property(fdt, "interrupt-controller", NULL, 0));
	{
		fdt64_t reg[4] = { cpu_to_fdt64(GICD_BASE),
				   cpu_to_fdt64(0x10000),
				   cpu_to_fdt64(GICR_BASE),
				   cpu_to_fdt64(0x20000ull * g.nr) };

		FDT(fdt_property(fdt, "reg", reg, sizeof(reg)));
	}
	FDT(fdt_property_u32(fdt, "phandle", PH_GIC));
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "timer"));
	FDT(fdt_property_string(fdt, "compatible", "arm,armv8-timer"));
	{
		/* PPIs 13, 14, 11, 10 (secure, non-secure, virtual, hyp
		 * physical timers), level-high. */
		fdt32_t irq[12];
		const uint32_t ppi[4] = { 13, 14, 11, 10 };

		for (int i = 0; i < 4; i++) {
			irq[3 * i] = cpu_to_fdt32(1);
			irq[3 * i + 1] = cpu_to_fdt32(ppi[i]);
			irq[3 * i + 2] = cpu_to_fdt32(4);
		}
		FDT(fdt_property(fdt, "interrupts", irq, sizeof(irq)));
	}
	FDT(fdt_property(fdt, "always-on", NULL, 0));
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "apb-pclk"));
	FDT(fdt_property_string(fdt, "compatible", "fixed-clock"));
	FDT(fdt_property_u32(fdt, "#clock-cells", 0));
	FDT(fdt_property_u32(fdt, "clock-frequency", 24000000));
	FDT(fdt_property_string(fdt, "clock-output-names", "clk24mhz"));
	FDT(fdt_property_u32(fdt, "phandle", PH_CLK));
	FDT(fdt_end_node(fdt));

	FDT(fdt_begin_node(fdt, "pl011@9000000"));
	FDT(fdt_property(fdt, "compatible", "arm,pl011\0arm,primecell", 24));
	fdt_reg2(fdt, UART_BASE, PAGE);
	{
		fdt32_t irq[3] = { cpu_to_fdt32(0), cpu_to_fdt32(1),
				   cpu_to_fdt32(4) };
		fdt32_t clk[2] = { cpu_to_fdt32(PH_CLK), cpu_to_fdt32(PH_CLK) };

		FDT(fdt_property(fdt, "interrupts", irq, sizeof(irq)));
		FDT(fdt_property(fdt, "clocks", clk, sizeof(clk)));
	}
	FDT(fdt_property(fdt, "clock-names", "uartclk\0apb_pclk", 17));
	FDT(fdt_end_node(fdt));

	FDT(fdt_end_node(fdt));
	FDT(fdt_finish(fdt));
	return fdt_totalsize(fdt);
}

static void add_vcpu(int kvm_fd, int vm_fd, unsigned int i, uint64_t pc,
		     uint64_t dtb)
{
	struct vcpu *v = &g.vcpus[i];
	struct kvm_vcpu_init init;
	int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);

	v->index = i;
	v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0 || size <= 0)
		DIE("KVM_CREATE_VCPU %u: %s\n", i, strerror(errno));
	memset(&init, 0, sizeof(init));
	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		DIE("KVM_ARM_PREFERRED_TARGET: %s\n", strerror(errno));
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
	if (i) /* started by the guest: PSCI CPU_ON */
		init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
	if (ioctl(v->fd, KVM_ARM_VCPU_INIT, &init) < 0)
		DIE("KVM_ARM_VCPU_INIT: %s\n", strerror(errno));
	v->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		DIE("mmap kvm_run: %s\n", strerror(errno));
	if (i == 0) { /* arm64 boot protocol: x0 = the DTB, x1..x3 = 0 */
		set_reg(v->fd, CORE_REG(regs.regs[0]), dtb);
		set_reg(v->fd, CORE_REG(regs.pc), pc);
	}
	if (vcpureq_vcpu_adopt(g.vm, i, v->fd, v->run, (size_t)size, &v->req))
		DIE("vcpureq_vcpu_adopt: %s\n", vcpureq_errmsg());
}

/* ---- the test: helpers, registers, pauses, the witness ---------------- */

static void msleep(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static _Atomic uint64_t notes_made, items_run;

/* Requests from a thread of their own, to random vCPUs, all the time. */
static void *requester(void *arg)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;

	(void)arg;
	while (!atomic_load_explicit(&g.quit, memory_order_acquire)) {
		struct vcpu *v = &g.vcpus[rnd(&s) % g.nr];

		if (vcpureq_request(REQ_NOTE, v->req) < 0)
			break; /* -EIO: dead */
		atomic_fetch_add_explicit(&notes_made, 1, memory_order_relaxed);
		msleep(2 + (unsigned int)(rnd(&s) % 20));
	}
	return NULL;
}

static int count_item(struct vcpureq_vcpu *req, void *arg)
{
	struct vcpu *v = arg;

	/* Run on the vCPU's own thread, outside guest mode. */
	if (!pthread_equal(pthread_self(), v->thread) ||
	    vcpureq_vcpu_mode(req) != VCPUREQ_OUTSIDE_GUEST_MODE)
		return -EPERM;
	atomic_fetch_add_explicit(&v->items, 1, memory_order_relaxed);
	return 0;
}

/* Run-on-vCPU items from a thread of their own, all the time. */
static void *worker(void *arg)
{
	uint64_t s = 0x2545f4914f6cdd1dull;
	int res;

	(void)arg;
	while (!atomic_load_explicit(&g.quit, memory_order_acquire)) {
		struct vcpu *v = &g.vcpus[rnd(&s) % g.nr];
		int r = vcpureq_run_on_vcpu(v->req, count_item, v, &res);

		if (r == -EIO || r == -ECANCELED)
			break;
		if (r || res)
			fail("run-on-vCPU %u: %d/%d\n", v->index, r, res);
		else
			atomic_fetch_add_explicit(&items_run, 1,
						  memory_order_relaxed);
		msleep(5 + (unsigned int)(rnd(&s) % 30));
	}
	return NULL;
}

static uint64_t reg_id(int i)
{
	if (i < 31)
		return CORE_REG(regs.regs[0]) + (uint64_t)i * 2;
	switch (i) {
	case 31: return CORE_REG(regs.sp);
	case 32: return CORE_REG(regs.pc);
	case 33: return CORE_REG(regs.pstate);
	case 34: return CORE_REG(sp_el1);
	default: return CORE_REG(elr_el1);
	}
}

static int read_regs(int fd, uint64_t *out)
{
	for (int i = 0; i < NR_REGS; i++) {
		int r = get_reg(fd, reg_id(i), &out[i]);

		if (r)
			return r;
	}
	return 0;
}

struct reg_check {
	struct vcpu *v;
	uint64_t paused[NR_REGS]; /* read by the control thread */
	_Atomic int state;        /* 0 not read, 1 equal, -1 differ/error, -2 ran unparked */
};

#define MAX_PAUSES 64
static struct reg_check checks[MAX_PAUSES][MAX_VCPUS];
static _Atomic unsigned int reg_reads, reg_mismatch;

/* On the vCPU's own thread, in its parking: a paused vCPU runs the items
 * queued to it there, without leaving the pause.  It must still be
 * parked, and its registers those the control thread read. */
static int reread_regs(struct vcpureq_vcpu *req, void *arg)
{
	struct reg_check *c = arg;
	uint64_t now_regs[NR_REGS];

	if (!vcpureq_vcpu_parked(req) || !vcpureq_vcpu_paused(req))
		return -2;
	if (read_regs(c->v->fd, now_regs) ||
	    memcmp(now_regs, c->paused, sizeof(now_regs)))
		return -1;
	return 1;
}

static uint64_t freq; /* CNTFRQ_EL0 */

static double ticks_ms(int64_t t)
{
	return (double)t * 1e3 / (double)freq;
}

static uint64_t vm_offset; /* guest CNTVCT = ours - vm_offset */
static uint64_t vm_offset_err; /* its uncertainty, in ticks */

/* KVM's per-VM counter offset, from the guest's counter (the vCPU's
 * KVM_REG_ARM_TIMER_CNT) read between two reads of ours: the best of 200
 * tries (this thread may be preempted between the reads). */
static bool measure_offset(void)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 200; i++) {
		uint64_t before = cntvct(), guest = 0, after;

		if (get_reg(g.vcpus[0].fd, KVM_REG_ARM_TIMER_CNT, &guest))
			return false;
		after = cntvct();
		if (after - before < best) {
			best = after - before;
			vm_offset = before + best / 2 - guest;
		}
	}
	vm_offset_err = best / 2 + 1;
	say("virtual counter: %" PRIu64 " Hz, the VM's offset %" PRIu64
	    " (+- %.3f ms)\n", freq, vm_offset, ticks_ms((int64_t)vm_offset_err));
	return true;
}

struct pause_rec {
	uint64_t p0, p1;       /* our counter: all parked, resume */
	unsigned int ms;
	double latency_ms;     /* vcpureq_pause() call to return */
	bool witnessed;        /* the witness was running */
};

static struct pause_rec pauses[MAX_PAUSES];
static unsigned int nr_pauses;

static bool one_pause(unsigned int ms, unsigned int k)
{
	struct vcpureq_deadline dl = { .size = sizeof(dl) };
	struct pause_rec *p = &pauses[nr_pauses];
	uint64_t again[NR_REGS];
	double t;
	int r, res = 0;

	clock_gettime(CLOCK_MONOTONIC, &dl.when);
	dl.when.tv_sec += 120;
	p->witnessed = atomic_load_explicit(&g.witness_ready,
					    memory_order_acquire) > 0;
	t = now();
	r = vcpureq_pause(g.vm, NULL, 0, &dl);
	if (r) {
		fail("pause %u: %s\n", k, vcpureq_errmsg());
		return false;
	}
	p->p0 = cntvct();
	p->latency_ms = (now() - t) * 1e3;
	p->ms = ms;
	for (unsigned int i = 0; i < g.nr; i++) {
		struct reg_check *c = &checks[k][i];

		c->v = &g.vcpus[i];
		if (read_regs(c->v->fd, c->paused) ||
		    read_regs(c->v->fd, again) ||
		    memcmp(again, c->paused, sizeof(again))) {
			fail("pause %u: vCPU %u's registers differ between two reads while paused\n",
			     k, i);
			atomic_fetch_add_explicit(&reg_mismatch, 1,
						  memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&reg_reads, 2, memory_order_relaxed);
		/* The same registers read on the vCPU's thread, while paused. */
		r = vcpureq_run_on_vcpu(c->v->req, reread_regs, c, &res);
		if (r)
			fail("pause %u: run_on_vcpu: %s\n", k, vcpureq_errmsg());
		atomic_store_explicit(&c->state, r ? -1 : res,
				      memory_order_release);
	}
	if (k == 0 && !measure_offset())
		fail("KVM_REG_ARM_TIMER_CNT: %s\n", strerror(errno));
	while ((cntvct() - p->p0) * 1000 / freq < ms)
		msleep(1);
	p->p1 = cntvct();
	if (vcpureq_resume(g.vm, NULL, 0)) {
		fail("resume %u: %s\n", k, vcpureq_errmsg());
		return false;
	}
	nr_pauses++;
	return true;
}

static void heartbeats(uint64_t *out)
{
	for (unsigned int i = 0; i < g.nr; i++)
		out[i] = atomic_load_explicit(&g.vcpus[i].heartbeats,
					      memory_order_acquire);
}

/* After a resume with the witness running: wait until every guest CPU's
 * witness thread has beaten twice (it ran), at most a generous 120 s. */
static bool guest_ran(void)
{
	uint64_t b[MAX_VCPUS], n[MAX_VCPUS];
	double end = now() + 120;
	bool all;

	heartbeats(b);
	do {
		msleep(5);
		heartbeats(n);
		all = true;
		for (unsigned int i = 0; i < g.nr; i++)
			all &= n[i] >= b[i] + 2;
	} while (!all && now() < end &&
		 !atomic_load_explicit(&g.powered_off, memory_order_acquire));
	return all;
}

/* Pause lengths (ms): during the boot (cycled until /init runs, at most
 * MAX_BOOT_PAUSES), then with the witness running. */
static const unsigned int boot_ms[] = { 150, 400, 250, 700, 120, 1000, 300,
					 500, 200, 800 };
static const unsigned int run_ms[] = { 120, 250, 400, 600, 900, 1300,
					1800, 2400, 3000, 200, 500, 1500,
					100, 350, 150, 700, 2000, 300, 1000,
					450 };
#define MAX_BOOT_PAUSES 16
_Static_assert(MAX_BOOT_PAUSES + sizeof(run_ms) / sizeof(run_ms[0]) <=
		       MAX_PAUSES, "pauses[] and checks[] hold every pause");

static void broadcast_wait(void)
{
	if (vcpureq_make_all_cpus_request(g.vm, REQ_SYNC) < 0)
		fail("broadcast WAIT: %s\n", vcpureq_errmsg());
}

/* Every witnessed pause inside a gap of every guest CPU; consecutive
 * pauses in different gaps. */
static void check_witness(void)
{
	/* The offset's uncertainty and 1 ms of slack. */
	uint64_t tol = vm_offset_err + freq / 1000;
	unsigned int confirmed = 0, witnessed = 0;
	int prev_gap[MAX_VCPUS];

	for (unsigned int i = 0; i < MAX_VCPUS; i++)
		prev_gap[i] = -1;

	for (unsigned int i = 0; i < g.nr; i++) {
		if (!g.summary[i])
			fail("witness: no summary from guest CPU %u\n", i);
		else
			say("witness CPU %u: %" PRIu64 " clock readings, %u gaps >= 50 ms, largest %.1f ms\n",
			    i, g.readings[i], g.nr_gaps[i], g.max_gap[i] / 1e6);
	}
	say("pause  length  latency   %s\n", g.nr == 2 ?
	    "gap seen by guest CPU 0 / CPU 1 (ms; in VMM time: start..end vs the pause)" :
	    "gaps seen by each guest CPU (ms)");
	for (unsigned int k = 0; k < nr_pauses; k++) {
		struct pause_rec *p = &pauses[k];
		bool ok = true;
		char buf[256];
		size_t n = 0;

		if (!p->witnessed) {
			say("%5u %5u ms %6.2f ms  (during boot, before the witness)\n",
			    k, p->ms, p->latency_ms);
			continue;
		}
		witnessed++;
		for (unsigned int i = 0; i < g.nr; i++) {
			int found = -1;

			for (unsigned int j = 0; j < g.nr_gaps[i]; j++) {
				struct gap *gp = &g.gaps[i][j];

				if (gp->a + vm_offset <= p->p0 + tol &&
				    gp->b + vm_offset + tol >= p->p1) {
					found = (int)j;
					break;
				}
			}
			if (found < 0) {
				ok = false;
				fail("pause %u (%u ms): guest CPU %u saw no gap covering it\n",
				     k, p->ms, i);
				n += (size_t)snprintf(buf + n, sizeof(buf) - n,
						      "  none");
				continue;
			}
			struct gap *gp = &g.gaps[i][found];

			if (gp->ns + 1000000 <
			    (uint64_t)(ticks_ms((int64_t)(p->p1 - p->p0)) * 1e6)) {
				ok = false;
				fail("pause %u: guest CPU %u's gap %.1f ms is shorter than the pause\n",
				     k, i, gp->ns / 1e6);
			}
			/* The previous witnessed pause's gap must have ended
			 * before this pause began: the guest ran between. */
			if (k > 0 && pauses[k - 1].witnessed &&
			    prev_gap[i] == found) {
				ok = false;
				fail("pause %u: guest CPU %u did not run since pause %u\n",
				     k, i, k - 1);
			}
			prev_gap[i] = found;
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
					      "  %7.1f (%+.1f..%+.1f)",
					      gp->ns / 1e6,
					      ticks_ms((int64_t)(gp->a + vm_offset - p->p0)),
					      ticks_ms((int64_t)(gp->b + vm_offset - p->p1)));
		}
		if (ok)
			confirmed++;
		say("%5u %5u ms %6.2f ms %s\n", k, p->ms, p->latency_ms, buf);
	}
	say("witness: %u of %u pauses taken while it ran confirmed by every guest CPU\n",
	    confirmed, witnessed);
	if (!witnessed)
		fail("witness: no pause taken while it ran\n");
}

static void control_run(void)
{
	unsigned int k = 0;
	double t;

	/* During the boot: pauses of varying length, as soon as the kernel
	 * runs, until /init starts (or the list ends). */
	msleep(300);
	for (unsigned int i = 0; i < MAX_BOOT_PAUSES &&
	     !atomic_load_explicit(&g.init_seen, memory_order_acquire);
	     i++) {
		if (!one_pause(boot_ms[i % (sizeof(boot_ms) / sizeof(boot_ms[0]))],
			       k++))
			return;
		broadcast_wait();
		msleep(500);
	}
	say("%u pauses during the boot\n", k);
	/* After it, with the witness running. */
	t = now();
	while (atomic_load_explicit(&g.witness_ready, memory_order_acquire) <
	       (int)g.nr) {
		if (now() - t > 240 ||
		    atomic_load_explicit(&g.powered_off, memory_order_acquire)) {
			fail("the witness did not start (240 s)\n");
			return;
		}
		msleep(10);
	}
	if (!guest_ran())
		fail("the witness does not beat\n");
	for (unsigned int i = 0; i < sizeof(run_ms) / sizeof(run_ms[0]); i++) {
		if (!one_pause(run_ms[i], k++))
			return;
		if (!guest_ran()) {
			fail("pause %u: the witness did not run after the resume\n",
			     k - 1);
			return;
		}
		broadcast_wait();
		msleep(50);
	}
	say("%u pause/resume cycles in all; stopping the witness\n", k);
}

/* The control thread: the cycles, then the witness's end (always: the
 * guest's /init powers off once the witness has reported). */
static void *control(void *arg)
{
	double t;

	(void)arg;
	control_run();
	atomic_store_explicit(&g.stop_witness, true, memory_order_relaxed);
	t = now();
	while (!atomic_load_explicit(&g.witness_done, memory_order_acquire) &&
	       !atomic_load_explicit(&g.powered_off, memory_order_acquire) &&
	       now() - t < 120)
		msleep(10);
	if (!atomic_load_explicit(&g.witness_done, memory_order_acquire))
		fail("the witness did not report\n");
	/* Release: pairs with main's acquire load (its deadline). */
	atomic_store_explicit(&g.control_done, true, memory_order_release);
	return NULL;
}

int main(int argc, char **argv)
{
	struct vcpureq_vm_opts opts = VCPUREQ_VM_OPTS_INIT;
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_create_device gic = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	uint64_t dist = GICD_BASE, redist = GICR_BASE, pc, text_offset;
	uint32_t nr_irqs = 128;
	const char *trace = NULL;
	char bootargs[512];
	pthread_t ctl, rq, wk;
	size_t isize, dsize;
	int kvm_fd, vm_fd, a = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	g.t0 = now();
	g.nr = 2;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "--test"))
			g.test = true;
		else if (!strcmp(argv[a], "--trace") && a + 1 < argc)
			trace = argv[++a];
		else if (!strcmp(argv[a], "--cpus") && a + 1 < argc)
			g.nr = (unsigned int)atoi(argv[++a]);
		else
			break;
	}
	if (argc - a < 2 || g.nr < 1 || g.nr > MAX_VCPUS) {
		fprintf(stderr, "usage: %s [--test] [--trace FILE] [--cpus 1..%d] IMAGE INITRD [KERNEL-ARGS]\n",
			argv[0], MAX_VCPUS);
		return 2;
	}
	snprintf(bootargs, sizeof(bootargs),
		 "console=ttyAMA0 rdinit=/init panic=-1 %s",
		 argc - a > 2 ? argv[a + 2] : "quiet");
	freq = cntfrq();

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	/* VM-wide setup before any vCPU: memory, the vGICv3's addresses. */
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0 || ioctl(vm_fd, KVM_CREATE_DEVICE, &gic) < 0)
		DIE("VM setup (KVM_CREATE_VM, the vGICv3): %s\n",
		    strerror(errno));
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
		  KVM_VGIC_V3_ADDR_TYPE_DIST, &dist);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
		  KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist);
	g.ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (g.ram == MAP_FAILED)
		DIE("mmap guest memory: %s\n", strerror(errno));
	region.guest_phys_addr = RAM_BASE;
	region.memory_size = RAM_SIZE;
	region.userspace_addr = (uintptr_t)g.ram;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		DIE("KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));

	/* The Image (its header: text_offset at 8; "ARM\x64" at 56), the
	 * initramfs and the DTB. */
	isize = load(argv[a], RAM_BASE + 0x200000, INITRD_GPA - RAM_BASE - 0x200000);
	if (isize < 64 || memcmp(g.ram + 0x200000 + 56, "ARM\x64", 4))
		DIE("%s: not an arm64 Image (no ARM\\x64 magic)\n", argv[a]);
	memcpy(&text_offset, g.ram + 0x200000 + 8, 8);
	if (text_offset) { /* old kernels: load at base + text_offset */
		memmove(g.ram + text_offset, g.ram + 0x200000, isize);
		pc = RAM_BASE + text_offset;
	} else {
		pc = RAM_BASE + 0x200000;
	}
	isize = load(argv[a + 1], INITRD_GPA, DTB_GPA - INITRD_GPA);
	dsize = make_dtb(g.ram + (DTB_GPA - RAM_BASE), 1 << 20, bootargs,
			 INITRD_GPA + isize);
	say("guest: %s at %#" PRIx64 ", initramfs %zu bytes at %#llx, DTB %zu bytes at %#llx (libfdt), %u vCPUs, %llu MiB\n",
	    argv[a], pc, isize, INITRD_GPA, dsize, DTB_GPA, g.nr,
	    RAM_SIZE >> 20);
	say("bootargs: %s\n", bootargs);
	say("clock: [0.000] is CLOCK_MONOTONIC %.6f s (the trace's time base)\n",
	    g.t0);

	/* vcpureq wraps our VM fd and adopts each vCPU; then the vGIC's
	 * interrupt count and init, after the vCPUs, before any runs. */
	opts.backend = VCPUREQ_BACKEND_KVM;
	opts.handle_requests = handle_requests;
	if (vcpureq_vm_open(&opts, vm_fd, &g.vm))
		DIE("vcpureq_vm_open: %s\n", vcpureq_errmsg());
	for (unsigned int i = 0; i < g.nr; i++)
		add_vcpu(kvm_fd, vm_fd, i, pc, DTB_GPA);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_CTRL,
		  KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
	if (trace) {
		struct vcpureq_trace_opts to = VCPUREQ_TRACE_OPTS_INIT;

		to.ring_events = 1u << 18;
		if (vcpureq_trace_start(g.vm, &to))
			DIE("vcpureq_trace_start: %s\n", vcpureq_errmsg());
	}

	for (unsigned int i = 0; i < g.nr; i++)
		if (pthread_create(&g.vcpus[i].thread, NULL, vcpu_thread,
				   &g.vcpus[i]))
			DIE("pthread_create\n");
	say("%u vCPU threads running (kick mechanism %s)\n", g.nr,
	    vcpureq_vm_kick_mechanism(g.vm) == VCPUREQ_KICK_SIGMASK ?
		    "KVM_SET_SIGNAL_MASK" : "immediate_exit");
	if (g.test && (pthread_create(&ctl, NULL, control, NULL) ||
		       pthread_create(&rq, NULL, requester, NULL) ||
		       pthread_create(&wk, NULL, worker, NULL)))
		DIE("pthread_create\n");

	/* Milestones, until every vCPU loop has ended. */
	{
		bool init = false, ready = false, ended, killed = false;
		double done_at = 0;

		do {
			msleep(5);
			/* The guest powers off once the witness has reported;
			 * a guest that does not within 120 s is ended. */
			if (!killed && atomic_load_explicit(&g.control_done,
							    memory_order_acquire)) {
				if (!done_at)
					done_at = now();
				else if (now() - done_at > 120) {
					fail("the guest did not power off (120 s after the test's end): VM_DEAD\n");
					vcpureq_vm_dead(g.vm);
					killed = true;
				}
			}
			if (!init && atomic_load_explicit(&g.init_seen,
							  memory_order_acquire)) {
				init = true;
				say("milestone: guest /init runs\n");
			}
			if (!ready && atomic_load_explicit(&g.witness_ready,
							   memory_order_acquire)) {
				ready = true;
				say("milestone: witness ready\n");
			}
			ended = true;
			for (unsigned int i = 0; i < g.nr; i++)
				ended &= atomic_load_explicit(&g.vcpus[i].ended,
							      memory_order_acquire);
		} while (!ended);
	}
	for (unsigned int i = 0; i < g.nr; i++)
		pthread_join(g.vcpus[i].thread, NULL);
	say("milestone: every vCPU loop ended (%s)\n",
	    atomic_load_explicit(&g.powered_off, memory_order_acquire) ?
		    "guest powered off" : "no poweroff");
	atomic_store_explicit(&g.quit, true, memory_order_release);
	if (g.test) {
		pthread_join(ctl, NULL);
		pthread_join(rq, NULL);
		pthread_join(wk, NULL);
	}
	if (trace) {
		struct vcpureq_trace_counts tc;
		FILE *f;
		long n;

		vcpureq_trace_stop(g.vm);
		vcpureq_trace_counts(g.vm, &tc, sizeof(tc));
		f = fopen(trace, "w");
		n = f ? vcpureq_trace_write_json(g.vm, f) : -errno;
		if (!f || n < 0 || fclose(f))
			fail("trace: %s: %ld\n", trace, n);
		say("trace: %ld events written to %s, %" PRIu64 " recorded, %" PRIu64 " lost\n",
		    n, trace, tc.recorded, tc.lost);
		if (tc.lost)
			fail("trace: %" PRIu64 " events lost (ring of %u)\n",
			     tc.lost, tc.ring_events);
	}

	if (g.test) {
		uint64_t notes = 0, syncs = 0, items = 0;
		struct vcpureq_request_stats rs;

		check_witness();
		for (unsigned int k = 0; k < nr_pauses; k++)
			for (unsigned int i = 0; i < g.nr; i++) {
				int s = atomic_load_explicit(&checks[k][i].state,
							     memory_order_acquire);

				if (s == -1) {
					atomic_fetch_add_explicit(&reg_mismatch, 1,
							  memory_order_relaxed);
					fail("pause %u: vCPU %u's registers read on its thread differ from the control thread's\n",
					     k, i);
				} else if (s == -2) {
					fail("pause %u: vCPU %u ran the run-on-vCPU item unparked\n",
					     k, i);
				} else if (s != 1) {
					fail("pause %u: vCPU %u's read on its thread never completed\n",
					     k, i);
				}
			}
		say("registers: %u reads of %d registers while paused, %u more by run-on-vCPU on the parked vCPUs' threads, %u differences\n",
		    atomic_load_explicit(&reg_reads, memory_order_relaxed), NR_REGS, nr_pauses * g.nr,
		    atomic_load_explicit(&reg_mismatch, memory_order_relaxed));
		for (unsigned int i = 0; i < g.nr; i++) {
			notes += atomic_load_explicit(&g.vcpus[i].notes, memory_order_relaxed);
			syncs += atomic_load_explicit(&g.vcpus[i].syncs, memory_order_relaxed);
			items += atomic_load_explicit(&g.vcpus[i].items, memory_order_relaxed);
		}
		vcpureq_vm_request_stats(g.vm, REQ_NOTE, &rs, sizeof(rs));
		say("requests from another thread: %" PRIu64 " made, %" PRIu64 " handled (coalesced: %" PRIu64 "); broadcast WAITs handled: %" PRIu64 "; run-on-vCPU items: %" PRIu64 " run\n",
		    atomic_load_explicit(&notes_made, memory_order_relaxed), notes, rs.made - notes, syncs, items);
		if (!notes || !items || syncs < g.nr)
			fail("requests, items or WAITs did not flow\n");
		if (nr_pauses < 20)
			fail("only %u pause/resume cycles\n", nr_pauses);
		if (!atomic_load_explicit(&g.powered_off, memory_order_relaxed))
			fail("the guest did not power off\n");
		if (!g.dmesg_checked)
			fail("the guest did not report its dmesg check\n");
		if (g.warnings)
			fail("%u kernel warnings on the guest console\n",
			     g.warnings);
	}
	if (vcpureq_vm_free(g.vm))
		fail("vcpureq_vm_free: %s\n", vcpureq_errmsg());
	for (unsigned int i = 0; i < g.nr; i++)
		close(g.vcpus[i].fd);
	close((int)gic.fd);
	close(vm_fd);
	close(kvm_fd);
	say("%s: %u failures, %.1f s\n", g.failures ? "FAIL" : "PASS",
	    g.failures, now() - g.t0);
	return g.failures ? 1 : 0;
}
