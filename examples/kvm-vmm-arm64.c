/* SPDX-License-Identifier: MIT */
/*
 * examples/kvm-vmm.c on arm64: the same tiny VMM, built the way production
 * arm64 VMMs are, with vcpureq for its requests.  Every KVM ioctl is here:
 *
 *   - the VMM opens /dev/kvm and creates the VM fd itself, does its VM-wide
 *     setup (guest memory, the in-kernel vGICv3 and its addresses) and only
 *     then hands the VM fd to vcpureq (vcpureq_vm_open);
 *   - it creates 4 vCPUs one by one (KVM_CREATE_VCPU, KVM_ARM_VCPU_INIT
 *     with the preferred target and PSCI 0.2, mmap of kvm_run, registers
 *     with KVM_SET_ONE_REG) and has vcpureq adopt each
 *     (vcpureq_vcpu_adopt); then the vGIC's init (after the vCPUs);
 *   - each vCPU thread runs the VMM's own loop: vcpureq_vcpu_enter(), its
 *     own ioctl(KVM_RUN), vcpureq_vcpu_exit();
 *   - real guest code: every vCPU enables its GIC CPU interface, vCPU 0
 *     also routes SPI 32 to itself; every vCPU waits in wfi (KVM sleeps it
 *     inside KVM_RUN); the interrupt handler reports a byte of guest
 *     memory with an MMIO write (the exit the VMM sees);
 *   - a request with a payload (set that byte, on the vCPU's own thread),
 *     a pause of all vCPUs through a WAIT request, an interrupt through the
 *     in-kernel vGIC (KVM_IRQ_LINE: KVM delivers it, no kick), and shutdown
 *     with VM_DEAD.
 *
 * Exits 0 when every step checked out, 77 (SKIP) without /dev/kvm, 1 on
 * failure.  arm64 only (AArch64 guest code).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vcpureq/vcpureq.h>

#define NR_VCPUS 4
#define MEM_SIZE 0x100000
#define CODE_GPA 0x1000 /* VBAR_EL1 (2 KiB aligned); entry at +0x800 */
#define DATA_GPA(i) (0x8000 + (i) * 16) /* per vCPU: iterations, irqs, byte */
#define REPORT_GPA 0x10000000 /* no memslot: an MMIO exit */
#define GICD_BASE 0x08000000
#define GICR_BASE 0x080a0000 /* + 0x20000 per vCPU */
#define SPI 32

/*
 * The guest (EL1h, MMU off; x0 = its data block, x1 = REPORT_GPA, x2 =
 * its redistributor, x3 = the distributor, x4 = 1 on vCPU 0):
 *   0x800 adr x11, CODE_GPA; msr vbar_el1, x11
 *         ICC_SRE_EL1 |= 1; ICC_PMR_EL1 = 0xff; ICC_IGRPEN1_EL1 = 1
 *         GICR_WAKER = 0; cbz x4, 1f
 *         GICD_CTLR = ARE | EnableGrp1; SPI 32: group 1, priority 0xa0,
 *         edge, routed to affinity 0, enabled; dsb sy; isb
 *      1: msr daifclr, #2
 *   loop: add word [x0], 1; wfi; b loop
 *   0x880 handler (vector +0x280 branches here): mrs x11, ICC_IAR1_EL1;
 *         if < 1020: add word [x0 + 4], 1; w12 = byte [x0 + 8];
 *         str w12, [x1] (the report); msr ICC_EOIR1_EL1, x11; eret
 */
static const uint32_t guest_code[] = {
	0x10ffc00b, 0xd518c00b, 0xd538ccab, 0xb240016b, 0xd518ccab, 0xd5033fdf,
	0xd2801feb, 0xd518460b, 0xd280002b, 0xd518cceb, 0xd5033fdf, 0xb900145f,
	0xb40001c4, 0x5280024b, 0xb900006b, 0x5280002b, 0xb900846b, 0x5280140b,
	0x3910806b, 0x5280004b, 0xb90c086b, 0xf930807f, 0x5280002b, 0xb901046b,
	0xd5033f9f, 0xd5033fdf, 0xd50342ff, 0xb940000a, 0x1100054a, 0xb900000a,
	0xd503207f, 0x17fffffc, 0xd538cc0b, 0x710ff17f, 0x540000e2, 0xb940040c,
	0x1100058c, 0xb900040c, 0x3940200c, 0xb900002c, 0xd518cc2b, 0xd69f03e0,
};
#define ENTRY_OFFSET 0x800
#define IRQ_VECTOR_OFFSET 0x280 /* IRQ, current EL with SP_ELx */
#define IRQ_VECTOR_WORD 0x14000180 /* b 0x880 (the handler) */

/* The VMM's requests: a payload to store, and "park until resumed". */
#define REQ_SET_BYTE VCPUREQ_ARCH_REQ(0)
#define REQ_PAUSE VCPUREQ_ARCH_REQ_FLAGS(1, VCPUREQ_REQUEST_WAIT)

struct vcpu {
	unsigned int index;
	int fd;
	struct kvm_run *run;
	struct vcpureq_vcpu *req;
	pthread_t thread;
	volatile uint32_t *data; /* the guest's data block */
};

static uint8_t *mem;
static struct vcpu vcpus[NR_VCPUS];
static _Atomic uint8_t payload;         /* written before REQ_SET_BYTE */
static _Atomic unsigned int reports;    /* report writes seen */
static _Atomic uint8_t last_report;
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static unsigned int parked;
static bool paused;

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); exit(1); } while (0)

/* Requests, on the vCPU's own thread, outside guest mode. */
static int handle_requests(struct vcpureq_vcpu *req, void *opaque)
{
	struct vcpu *v = &vcpus[vcpureq_vcpu_index(req)];

	(void)opaque;
	/* check_request's acquire makes the payload written before the
	 * make visible. */
	if (vcpureq_check_request(REQ_SET_BYTE, req) > 0)
		((volatile uint8_t *)v->data)[8] =
			atomic_load_explicit(&payload, memory_order_relaxed);
	/* REQ_PAUSE stays pending: vcpureq_vcpu_enter() hands it to the
	 * thread, which parks (below). */
	return 0;
}

static void park(void)
{
	pthread_mutex_lock(&park_lock);
	parked++;
	pthread_cond_broadcast(&park_cond);
	while (paused)
		pthread_cond_wait(&park_cond, &park_lock);
	parked--;
	pthread_mutex_unlock(&park_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	int r;

	if (vcpureq_vcpu_bind(v->req))
		FAIL("bind: %s\n", vcpureq_errmsg());
	for (;;) {
		r = vcpureq_vcpu_enter(v->req);
		if (r == VCPUREQ_RUN_REQUEST) {
			if (vcpureq_check_request(REQ_PAUSE, v->req) > 0)
				park();
			continue;
		}
		if (r != VCPUREQ_RUN_ENTER)
			break; /* -EIO: VM_DEAD */
		r = ioctl(v->fd, KVM_RUN, 0);
		r = vcpureq_vcpu_exit(v->req, r < 0 ? -errno : 0);
		if (r == VCPUREQ_RUN_AGAIN)
			continue; /* a kick: back to the requests */
		if (r != VCPUREQ_RUN_EXIT)
			FAIL("vCPU %u: KVM_RUN: %s\n", v->index, vcpureq_errmsg());
		/* The MMIO write completes on the next KVM_RUN. */
		if (v->run->exit_reason == KVM_EXIT_MMIO &&
		    v->run->mmio.phys_addr == REPORT_GPA &&
		    v->run->mmio.is_write) {
			atomic_store(&last_report, v->run->mmio.data[0]);
			atomic_fetch_add(&reports, 1);
		} else {
			FAIL("vCPU %u: unexpected exit %u\n", v->index,
			     v->run->exit_reason);
		}
	}
	if (r != -EIO)
		FAIL("vCPU %u: %d: %s\n", v->index, r, vcpureq_errmsg());
	vcpureq_vcpu_unbind(v->req);
	return NULL;
}

#define CORE_REG(field)                                                  \
	(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |           \
	 (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

static void set_reg(int fd, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&value };

	if (ioctl(fd, KVM_SET_ONE_REG, &reg) < 0)
		FAIL("KVM_SET_ONE_REG %#llx: %s\n", (unsigned long long)id,
		     strerror(errno));
}

static void add_vcpu(int kvm_fd, int vm_fd, struct vcpureq_vm *vm,
		     unsigned int i)
{
	struct vcpu *v = &vcpus[i];
	struct kvm_vcpu_init init;
	int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);

	v->index = i;
	v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0 || size <= 0)
		FAIL("KVM_CREATE_VCPU: %s\n", strerror(errno));
	memset(&init, 0, sizeof(init));
	if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		FAIL("KVM_ARM_PREFERRED_TARGET: %s\n", strerror(errno));
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
	if (ioctl(v->fd, KVM_ARM_VCPU_INIT, &init) < 0)
		FAIL("KVM_ARM_VCPU_INIT: %s\n", strerror(errno));
	v->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		FAIL("mmap kvm_run: %s\n", strerror(errno));
	set_reg(v->fd, CORE_REG(regs.regs[0]), DATA_GPA(i));
	set_reg(v->fd, CORE_REG(regs.regs[1]), REPORT_GPA);
	set_reg(v->fd, CORE_REG(regs.regs[2]), GICR_BASE + i * 0x20000ull);
	set_reg(v->fd, CORE_REG(regs.regs[3]), GICD_BASE);
	set_reg(v->fd, CORE_REG(regs.regs[4]), i == 0 ? 1 : 0);
	set_reg(v->fd, CORE_REG(regs.pc), CODE_GPA + ENTRY_OFFSET);
	v->data = (volatile uint32_t *)(mem + DATA_GPA(i));
	/* vcpureq adopts the fd and the mapping: it never closes or unmaps
	 * them; we do, after vcpureq_vm_free(). */
	if (vcpureq_vcpu_adopt(vm, i, v->fd, v->run, (size_t)size, &v->req))
		FAIL("vcpureq_vcpu_adopt: %s\n", vcpureq_errmsg());
}

static void vgic_attr(int dev, uint32_t group, uint64_t attr, void *val)
{
	struct kvm_device_attr a = { .group = group, .attr = attr,
				     .addr = (uintptr_t)val };

	if (ioctl(dev, KVM_SET_DEVICE_ATTR, &a) < 0)
		FAIL("vGIC attribute %u/%llu: %s\n", group,
		     (unsigned long long)attr, strerror(errno));
}

static bool all_halted(void)
{
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		if (vcpureq_vcpu_mode(vcpus[i].req) != VCPUREQ_IN_GUEST_MODE ||
		    vcpus[i].data[0] == 0)
			return false;
	return true;
}

int main(void)
{
	struct vcpureq_vm_opts opts = VCPUREQ_VM_OPTS_INIT;
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_create_device gic = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	struct kvm_irq_level irq = {
		.irq = KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT | SPI
	};
	uint64_t dist = GICD_BASE, redist = GICR_BASE;
	uint32_t before[NR_VCPUS], nr_irqs = 128;
	struct vcpureq_vm *vm;
	int kvm_fd, vm_fd;
	unsigned int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	/* The VM and its VM-wide setup, before any vCPU exists. */
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0 || ioctl(vm_fd, KVM_CREATE_DEVICE, &gic) < 0)
		FAIL("VM setup (KVM_CREATE_VM, the vGICv3): %s\n",
		     strerror(errno));
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
		  KVM_VGIC_V3_ADDR_TYPE_DIST, &dist);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_ADDR,
		  KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		FAIL("mmap: %s\n", strerror(errno));
	memcpy(mem + CODE_GPA + ENTRY_OFFSET, guest_code, sizeof(guest_code));
	*(uint32_t *)(mem + CODE_GPA + IRQ_VECTOR_OFFSET) = IRQ_VECTOR_WORD;
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		FAIL("KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));

	/* vcpureq wraps our VM fd; vCPUs are added one by one; the vGIC is
	 * initialised once they all exist, before any runs. */
	opts.backend = VCPUREQ_BACKEND_KVM;
	opts.handle_requests = handle_requests;
	if (vcpureq_vm_open(&opts, vm_fd, &vm))
		FAIL("vcpureq_vm_open: %s\n", vcpureq_errmsg());
	for (i = 0; i < NR_VCPUS; i++)
		add_vcpu(kvm_fd, vm_fd, vm, i);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
	vgic_attr((int)gic.fd, KVM_DEV_ARM_VGIC_GRP_CTRL,
		  KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
	if (!vcpureq_vcpu_lapic_in_kernel(vcpus[0].req))
		FAIL("vcpureq does not see the in-kernel vGIC\n");
	for (i = 0; i < NR_VCPUS; i++)
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread,
				   &vcpus[i]))
			FAIL("pthread_create\n");
	while (!all_halted())
		usleep(1000);
	printf("%u vCPUs in wfi inside KVM_RUN (in-kernel vGICv3), kick mechanism %s\n",
	       NR_VCPUS, vcpureq_vm_kick_mechanism(vm) == VCPUREQ_KICK_SIGMASK ?
				 "KVM_SET_SIGNAL_MASK" : "immediate_exit");

	/* 1. A request with a payload to vCPU 0: the kick interrupts its
	 * wfi inside KVM_RUN, the handler stores the byte, the guest waits
	 * on. */
	atomic_store_explicit(&payload, 0x5a, memory_order_relaxed);
	if (vcpureq_request(REQ_SET_BYTE, vcpus[0].req) < 0)
		FAIL("request: %s\n", vcpureq_errmsg());

	/* 2. Pause every vCPU: a WAIT request returns once each has left
	 * guest mode; then wait until every thread has parked. */
	pthread_mutex_lock(&park_lock);
	paused = true; /* before the request: a vCPU may park at once */
	pthread_mutex_unlock(&park_lock);
	if (vcpureq_make_all_cpus_request(vm, REQ_PAUSE) < 0)
		FAIL("pause: %s\n", vcpureq_errmsg());
	pthread_mutex_lock(&park_lock);
	while (parked < NR_VCPUS)
		pthread_cond_wait(&park_cond, &park_lock);
	pthread_mutex_unlock(&park_lock);
	for (i = 0; i < NR_VCPUS; i++) {
		before[i] = vcpus[i].data[0];
		if (vcpureq_vcpu_mode(vcpus[i].req) != VCPUREQ_OUTSIDE_GUEST_MODE)
			FAIL("vCPU %u paused but in guest mode\n", i);
	}
	if (((volatile uint8_t *)vcpus[0].data)[8] != 0x5a)
		FAIL("payload not stored before the pause\n");
	printf("paused %u vCPUs; payload 0x%02x stored by vCPU 0's thread\n",
	       NR_VCPUS, ((volatile uint8_t *)vcpus[0].data)[8]);
	pthread_mutex_lock(&park_lock);
	paused = false;
	pthread_cond_broadcast(&park_cond);
	pthread_mutex_unlock(&park_lock);

	/* 3. An interrupt through the in-kernel vGIC (an edge on SPI 32): KVM
	 * wakes vCPU 0 and injects it; the guest's handler reports the
	 * stored byte. */
	irq.level = 1;
	if (ioctl(vm_fd, KVM_IRQ_LINE, &irq) < 0)
		FAIL("KVM_IRQ_LINE: %s\n", strerror(errno));
	irq.level = 0;
	ioctl(vm_fd, KVM_IRQ_LINE, &irq);
	while (atomic_load(&reports) == 0)
		usleep(1000);
	if (atomic_load(&last_report) != 0x5a || vcpus[0].data[1] != 1)
		FAIL("interrupt: report 0x%02x, %u taken\n",
		     atomic_load(&last_report), vcpus[0].data[1]);
	printf("SPI %u through KVM_IRQ_LINE: guest handler reported 0x%02x\n",
	       SPI, atomic_load(&last_report));

	/* 4. Shutdown: VM_DEAD ends every loop with -EIO. */
	if (vcpureq_vm_dead(vm) < 0)
		FAIL("vm_dead: %s\n", vcpureq_errmsg());
	for (i = 0; i < NR_VCPUS; i++)
		pthread_join(vcpus[i].thread, NULL);
	for (i = 0; i < NR_VCPUS; i++) {
		struct vcpureq_stats st;

		vcpureq_vcpu_stats(vcpus[i].req, &st, sizeof(st));
		printf("vCPU %u: %llu guest loops (%u before pause), %llu signals, %llu entries\n",
		       i, (unsigned long long)vcpus[i].data[0], before[i],
		       (unsigned long long)st.signals_sent,
		       (unsigned long long)st.entries);
	}
	/* vcpureq closes nothing of ours: we release our fds after it. */
	if (vcpureq_vm_free(vm))
		FAIL("vcpureq_vm_free: %s\n", vcpureq_errmsg());
	for (i = 0; i < NR_VCPUS; i++)
		close(vcpus[i].fd);
	close((int)gic.fd);
	close(vm_fd);
	close(kvm_fd);
	printf("OK\n");
	return 0;
}
