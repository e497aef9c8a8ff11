/* KVM probe firmware: reset vector -> protected mode -> long mode with
   paging -> touch memory -> report via isa-debug-exit (port 0xf4).
   Build: as --64 -o p.o kvmprobe.S && ld -e 0 -Ttext=0 --oformat binary -o p.bin p.o
   The first 278 bytes are qemulaunch's probeCode (accel_test.go checks). */
	.set BASE, 0xffff0000
	.text
	.code16
start16:
	cli
	lgdtl %cs:(gdtr - start16)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $(BASE + pm32 - start16)
	.code32
pm32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	/* zero 0x1000..0x5000 */
	movl $0x1000, %edi
	xorl %eax, %eax
	movl $0x1000, %ecx
	rep stosl
	movl $0x2003, 0x1000      /* PML4[0] -> PDPT */
	movl $0x3003, 0x2000      /* PDPT[0] -> PD */
	movl $0x000083, 0x3000    /* PD[0] 2M page at 0 */
	movl $0x200083, 0x3008    /* PD[1] 2M page at 2M */
	movl $0x4003, 0x2018      /* PDPT[3] -> PD for 3G..4G */
	movl $0xffe00083, 0x4ff8  /* PD[511] 2M page holding this firmware */
	movl %cr4, %eax
	orl $0x20, %eax           /* PAE */
	movl %eax, %cr4
	movl $0x1000, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax          /* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax     /* PG|PE */
	movl %eax, %cr0
	ljmpl $0x18, $(BASE + lm64 - start16)
	.code64
lm64:
	/* write and read back 1 MiB at 2 MiB (the second 2M page) */
	movq $0x200000, %rdi
	movq $0x20000, %rcx
	movq $0x5a5a5a5a5a5a5a5a, %rax
1:	movq %rax, (%rdi)
	addq $8, %rdi
	decq %rcx
	jnz 1b
	movq $0x200000, %rdi
	movq $0x20000, %rcx
2:	cmpq %rax, (%rdi)
	jne bad
	addq $8, %rdi
	decq %rcx
	jnz 2b
	movb $0x2a, %al
	outb %al, $0xf4
	hlt
bad:
	movb $0x11, %al
	outb %al, $0xf4
	hlt
	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff  /* 0x08 code32 */
	.quad 0x00cf92000000ffff  /* 0x10 data */
	.quad 0x00af9a000000ffff  /* 0x18 code64 */
gdtr:
	.word gdtr - gdt - 1
	.long BASE + gdt - start16
	.org 0xfff0
reset:
	.code16
	jmp start16
	.org 0x10000
