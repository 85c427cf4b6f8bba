/* SPDX-License-Identifier: MIT */
/*
 * A complete, if tiny, KVM VMM built the way production VMMs are, with
 * vcpureq for its requests.  Every KVM ioctl is here:
 *
 *   - the VMM opens /dev/kvm and creates the VM fd itself, does its VM-wide
 *     setup (TSS address, in-kernel irqchip, guest memory) and only then
 *     hands the VM fd to vcpureq (vcpureq_vm_open);
 *   - it creates 4 vCPUs one by one (KVM_CREATE_VCPU, mmap of kvm_run,
 *     registers) and has vcpureq adopt each (vcpureq_vcpu_adopt);
 *   - each vCPU thread runs the VMM's own loop: vcpureq_vcpu_enter(), its
 *     own ioctl(KVM_RUN), vcpureq_vcpu_exit();
 *   - real guest code: vCPU 0 programs the in-kernel 8259 PIC; every vCPU
 *     waits in sti; hlt (KVM halts it inside KVM_RUN); the interrupt
 *     handler reports a byte of guest memory on port 0x11;
 *   - a request with a payload (set that byte, on the vCPU's own thread),
 *     a pause of all vCPUs through a WAIT request, an interrupt through the
 *     in-kernel PIC (KVM_IRQ_LINE: KVM delivers it, no kick), and shutdown
 *     with VM_DEAD.
 *
 * Exits 0 when every step checked out, 77 (SKIP) without /dev/kvm, 1 on
 * failure.  x86-64 only (real-mode guest code).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vcpureq/vcpureq.h>

#define NR_VCPUS 4
#define MEM_SIZE 0x100000
#define CODE_GPA 0x1000
#define DATA_GPA(i) (0x8000 + (i) * 16) /* per vCPU: iterations, irqs, byte */
#define PIC_VECTOR 0x28
#define PORT_REPORT 0x11

/*
 * The guest (16-bit real mode, at CODE_GPA; DS = its data block; BX = 1 on
 * vCPU 0):
 *   0x00 test bx,bx / je loop
 *   0x04 out 0x20/0x21 <- 0x11 0x28 0x04 0x01 0xfe: PIC at vectors 0x28+,
 *        IRQ0 unmasked
 *   0x18 loop: add dword [0],1 / sti / hlt / jmp loop
 *   0x22 handler: push ax / add dword [4],1 / mov al,[8] / out 0x11,al /
 *        mov al,0x20 / out 0x20,al (EOI) / pop ax / iret
 */
static const unsigned char guest_code[] = {
	0x85, 0xdb, 0x74, 0x14, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x28, 0xe6, 0x21,
	0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0x21,
	0x66, 0x83, 0x06, 0x00, 0x00, 0x01, 0xfb, 0xf4, 0xeb, 0xf6, 0x50, 0x66,
	0x83, 0x06, 0x04, 0x00, 0x01, 0xa0, 0x08, 0x00, 0xe6, 0x11, 0xb0, 0x20,
	0xe6, 0x20, 0x58, 0xcf,
};
#define HANDLER_OFFSET 0x22

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
static _Atomic unsigned int reports;    /* port 0x11 writes seen */
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
		if (v->run->exit_reason == KVM_EXIT_IO &&
		    v->run->io.port == PORT_REPORT) {
			atomic_store(&last_report,
				     *((uint8_t *)v->run + v->run->io.data_offset));
			atomic_fetch_add(&reports, 1);
		} else if (v->run->exit_reason != KVM_EXIT_IO) {
			FAIL("vCPU %u: unexpected exit %u\n", v->index,
			     v->run->exit_reason);
		}
	}
	if (r != -EIO)
		FAIL("vCPU %u: %d: %s\n", v->index, r, vcpureq_errmsg());
	vcpureq_vcpu_unbind(v->req);
	return NULL;
}

static void add_vcpu(int kvm_fd, int vm_fd, struct vcpureq_vm *vm,
		     unsigned int i)
{
	struct vcpu *v = &vcpus[i];
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0, .rflags = 2, .rbx = i == 0 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);

	v->index = i;
	v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0 || size <= 0)
		FAIL("KVM_CREATE_VCPU: %s\n", strerror(errno));
	v->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED)
		FAIL("mmap kvm_run: %s\n", strerror(errno));
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		FAIL("KVM_GET_SREGS: %s\n", strerror(errno));
	sregs.cs.base = CODE_GPA;
	sregs.cs.selector = CODE_GPA >> 4;
	sregs.ds.base = DATA_GPA(i);
	sregs.ds.selector = (uint16_t)(DATA_GPA(i) >> 4);
	sregs.ss.base = 0x20000 + i * 0x1000;
	sregs.ss.selector = (uint16_t)(sregs.ss.base >> 4);
	regs.rsp = 0xff0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
	    /* APs wait for INIT/SIPI with an in-kernel LAPIC: start them. */
	    ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		FAIL("vCPU %u registers: %s\n", i, strerror(errno));
	v->data = (volatile uint32_t *)(mem + DATA_GPA(i));
	/* vcpureq adopts the fd and the mapping: it never closes or unmaps
	 * them; we do, after vcpureq_vm_free(). */
	if (vcpureq_vcpu_adopt(vm, i, v->fd, v->run, (size_t)size, &v->req))
		FAIL("vcpureq_vcpu_adopt: %s\n", vcpureq_errmsg());
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
	struct kvm_irq_level irq = { .irq = 0 };
	uint32_t before[NR_VCPUS];
	struct vcpureq_vm *vm;
	int kvm_fd, vm_fd;
	unsigned int i;
	uint16_t *ivt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	/* The VM and its VM-wide setup, before any vCPU exists. */
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0 || ioctl(vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0 ||
	    ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		FAIL("VM setup: %s\n", strerror(errno));
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		FAIL("mmap: %s\n", strerror(errno));
	memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
	ivt = (uint16_t *)(mem + PIC_VECTOR * 4);
	ivt[0] = HANDLER_OFFSET;   /* offset */
	ivt[1] = CODE_GPA >> 4;    /* segment */
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		FAIL("KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));

	/* vcpureq wraps our VM fd; vCPUs are added one by one. */
	opts.backend = VCPUREQ_BACKEND_KVM;
	opts.handle_requests = handle_requests;
	if (vcpureq_vm_open(&opts, vm_fd, &vm))
		FAIL("vcpureq_vm_open: %s\n", vcpureq_errmsg());
	for (i = 0; i < NR_VCPUS; i++) {
		add_vcpu(kvm_fd, vm_fd, vm, i);
		if (pthread_create(&vcpus[i].thread, NULL, vcpu_thread,
				   &vcpus[i]))
			FAIL("pthread_create\n");
	}
	while (!all_halted())
		usleep(1000);
	printf("%u vCPUs halted in KVM_RUN (in-kernel irqchip), kick mechanism %s\n",
	       NR_VCPUS, vcpureq_vm_kick_mechanism(vm) == VCPUREQ_KICK_SIGMASK ?
				 "KVM_SET_SIGNAL_MASK" : "immediate_exit");

	/* 1. A request with a payload to vCPU 0: the kick interrupts its
	 * in-kernel halt, the handler stores the byte, the guest halts on. */
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

	/* 3. An interrupt through the in-kernel PIC: KVM wakes vCPU 0 and
	 * injects it; the guest's handler reports the stored byte. */
	irq.level = 1;
	ioctl(vm_fd, KVM_IRQ_LINE, &irq);
	irq.level = 0;
	ioctl(vm_fd, KVM_IRQ_LINE, &irq);
	while (atomic_load(&reports) == 0)
		usleep(1000);
	if (atomic_load(&last_report) != 0x5a || vcpus[0].data[1] != 1)
		FAIL("interrupt: report 0x%02x, %u taken\n",
		     atomic_load(&last_report), vcpus[0].data[1]);
	printf("IRQ0 through KVM_IRQ_LINE: guest handler reported 0x%02x\n",
	       atomic_load(&last_report));

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
	close(vm_fd);
	close(kvm_fd);
	printf("OK\n");
	return 0;
}
