/* Guest runtime core: libc bits, serial console (16550 THR at 0x3F8, LSR bit 5), isa-debug-exit
 * (0xF4), multiboot command line, fw_cfg CPU count, TSC calibration against PIT channel 2
 * (8254 datasheet mode 0; port 0x61 bit 0 = gate 2, bit 5 = OUT2), IDT setup and dispatch
 * (SDM vol. 3A 6.10-6.14). Not supported: serial input, fw_cfg DMA, printf field widths other
 * than zero-padded integers. */
#include "rt.h"

u32 rt_mb_magic __attribute__((section(".data")));
u32 rt_mb_info __attribute__((section(".data")));

void* memset(void* d, int c, size_t n) {
  volatile u8* p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
void* memcpy(void* d, const void* s, size_t n) {
  volatile u8* p = d;
  const u8* q = s;
  while (n--) *p++ = *q++;
  return d;
}
void* memmove(void* d, const void* s, size_t n) {
  u8* p = d;
  const u8* q = s;
  if (p < q) return memcpy(d, s, n);
  while (n--) p[n] = q[n];
  return d;
}
int memcmp(const void* a, const void* b, size_t n) {
  const u8* p = a;
  const u8* q = b;
  for (size_t i = 0; i < n; i++)
    if (p[i] != q[i]) return p[i] < q[i] ? -1 : 1;
  return 0;
}
size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

/* ---- console ---- */
static volatile u32 console_lock;
static volatile int failures;

static u64 irq_save(void) {
  u64 f;
  __asm__ volatile("pushfq; popq %0; cli" : "=r"(f)::"memory");
  return f;
}
static void irq_restore(u64 f) {
  if (f & 0x200) sti();
}

static void serial_putc(char c) {
  /* LSR.THRE: the emulated UART is always ready; bound the poll anyway. */
  for (int i = 0; i < 1000 && !(inb(0x3FD) & 0x20); i++) {
  }
  outb(0x3F8, (u8)c);
}

static void put_str(const char* s) {
  while (*s) serial_putc(*s++);
}

static void put_u64(u64 v, unsigned base, int width, char pad) {
  char buf[24];
  int n = 0;
  do {
    u64 d = v % base;
    buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  while (n < width && n < (int)sizeof(buf)) buf[n++] = pad;
  while (n) serial_putc(buf[--n]);
}

static void vprint(const char* fmt, __builtin_va_list ap) {
  for (const char* p = fmt; *p; p++) {
    if (*p != '%') {
      serial_putc(*p);
      continue;
    }
    p++;
    char pad = ' ';
    int width = 0;
    if (*p == '0') pad = '0';
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    int is_long = 0;
    while (*p == 'l') {
      is_long = 1;
      p++;
    }
    switch (*p) {
      case 'd':
      case 'i': {
        i64 v = is_long ? __builtin_va_arg(ap, i64) : __builtin_va_arg(ap, int);
        if (v < 0) {
          serial_putc('-');
          v = -v;
        }
        put_u64((u64)v, 10, width, pad);
        break;
      }
      case 'u':
        put_u64(is_long ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, width, pad);
        break;
      case 'x':
        put_u64(is_long ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, width, pad);
        break;
      case 's': {
        const char* s = __builtin_va_arg(ap, const char*);
        put_str(s ? s : "(null)");
        break;
      }
      case 'c':
        serial_putc((char)__builtin_va_arg(ap, int));
        break;
      case '%':
        serial_putc('%');
        break;
      case 0:
        return;
      default:
        serial_putc('?');
    }
  }
}

static void lock_console(u64* flags) {
  *flags = irq_save();
  while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) {
  }
}
static void unlock_console(u64 flags) {
  __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
  irq_restore(flags);
}

void rt_printf(const char* fmt, ...) {
  u64 f;
  __builtin_va_list ap;
  __builtin_va_start(ap, fmt);
  lock_console(&f);
  vprint(fmt, ap);
  unlock_console(f);
  __builtin_va_end(ap);
}

void rt_fail(const char* fmt, ...) {
  u64 f;
  __builtin_va_list ap;
  __builtin_va_start(ap, fmt);
  lock_console(&f);
  put_str("FAIL: ");
  vprint(fmt, ap);
  serial_putc('\n');
  __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
  unlock_console(f);
  __builtin_va_end(ap);
}

int rt_failures(void) {
  return failures;
}

void rt_check_strict(u64 got, u64 want, const char* what) {
  if (got == want) return;
  if (rt_cmdline_flag("strict")) {
    rt_fail("%s: got 0x%lx, expected 0x%lx", what, got, want);
  } else {
    rt_printf("NOTE: %s: got 0x%lx, expected 0x%lx (fatal with 'strict')\n", what, got, want);
  }
}

void rt_halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

void rt_exit(void) {
  if (failures == 0) {
    rt_printf("PASS\n");
  } else {
    rt_printf("FAIL: %d check(s) failed\n", failures);
  }
  /* isa-debug-exit: host status = (code << 1) | 1 */
  outb(0xF4, failures ? 1 : 0);
  rt_halt_forever();
}

/* ---- command line ---- */
static char cmdline_buf[512];

const char* rt_cmdline(void) {
  return cmdline_buf;
}

static void copy_cmdline(void) {
  cmdline_buf[0] = 0;
  if (rt_mb_magic != 0x2BADB002 || rt_mb_info == 0) return;
  const volatile u32* info = (const volatile u32*)(u64)rt_mb_info;
  if (!(info[0] & (1u << 2)) || info[4] == 0) return;
  const volatile char* s = (const volatile char*)(u64)info[4];
  size_t i = 0;
  for (; i + 1 < sizeof(cmdline_buf) && s[i]; i++) cmdline_buf[i] = s[i];
  cmdline_buf[i] = 0;
}

/* Finds the word starting with `prefix` (whole word if exact); returns a pointer past it. */
static const char* find_word(const char* prefix, int exact) {
  size_t n = strlen(prefix);
  const char* p = cmdline_buf;
  while (*p) {
    while (*p == ' ') p++;
    const char* w = p;
    while (*p && *p != ' ') p++;
    size_t len = (size_t)(p - w);
    if (len >= n && memcmp(w, prefix, n) == 0 && (!exact || len == n)) return w + n;
  }
  return NULL;
}

u64 rt_cmdline_u64(const char* key, u64 def) {
  char pat[40];
  size_t n = strlen(key);
  if (n + 2 > sizeof(pat)) return def;
  memcpy(pat, key, n);
  pat[n] = '=';
  pat[n + 1] = 0;
  const char* v = find_word(pat, 0);
  if (!v) return def;
  u64 base = 10, r = 0;
  if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v += 2;
  }
  for (; *v && *v != ' '; v++) {
    u64 d;
    if (*v >= '0' && *v <= '9') {
      d = (u64)(*v - '0');
    } else if (base == 16 && *v >= 'a' && *v <= 'f') {
      d = (u64)(*v - 'a' + 10);
    } else if (base == 16 && *v >= 'A' && *v <= 'F') {
      d = (u64)(*v - 'A' + 10);
    } else {
      return def;
    }
    r = r * base + d;
  }
  return r;
}

int rt_cmdline_flag(const char* word) {
  return find_word(word, 1) != NULL;
}

/* ---- fw_cfg ---- */
u32 rt_fwcfg_cpu_count(void) {
  outw(0x510, 0x0000); /* FW_CFG_SIGNATURE */
  char sig[4];
  for (int i = 0; i < 4; i++) sig[i] = (char)inb(0x511);
  if (memcmp(sig, "QEMU", 4) != 0) return 1;
  outw(0x510, 0x0005); /* FW_CFG_NB_CPUS, 16-bit little endian */
  u32 lo = inb(0x511);
  u32 hi = inb(0x511);
  u32 n = lo | (hi << 8);
  if (n == 0) return 1;
  return n > RT_MAX_CPUS ? RT_MAX_CPUS : n;
}

/* ---- time ---- */
static u64 tsc_khz;

u64 rt_tsc_khz(void) {
  if (tsc_khz) return tsc_khz;
  u64 khz = rt_cmdline_u64("tsc_khz", 0);
  if (!khz) {
    /* PIT channel 2, mode 0, 11932 counts of 1.193182 MHz = 10 ms; OUT2 rises at terminal count. */
    u8 p61 = inb(0x61);
    outb(0x61, (u8)((p61 & ~0x02) | 0x01));
    outb(0x43, 0xB0);
    outb(0x42, 11932 & 0xFF);
    u64 t0 = rdtsc();
    outb(0x42, 11932 >> 8);
    u32 polls = 0;
    while (!(inb(0x61) & 0x20) && polls < 2000000) polls++;
    u64 t1 = rdtsc();
    outb(0x61, p61);
    khz = (t1 - t0) / 10;
    if (polls >= 2000000 || khz < 100000) {
      rt_printf("warning: PIT calibration failed, assuming 2 GHz TSC\n");
      khz = 2000000;
    }
  }
  tsc_khz = khz;
  return khz;
}

void rt_delay_us(u64 us) {
  u64 end = rdtsc() + us * rt_tsc_khz() / 1000;
  while (rdtsc() < end) {
  }
}

int rt_wait_ge(volatile u64* counter, u64 want, u64 timeout_ms) {
  u64 end = rdtsc() + timeout_ms * rt_tsc_khz();
  u64 f = irq_save();
  sti();
  int ok = 1;
  while (*counter < want) {
    if (rdtsc() > end) {
      ok = 0;
      break;
    }
  }
  if (!(f & 0x200)) cli();
  return ok;
}

/* ---- CPU features ---- */
int rt_has_x2apic(void) {
  u32 a, b, c, d;
  cpuid(1, 0, &a, &b, &c, &d);
  return (c >> 21) & 1;
}
int rt_has_tsc_deadline(void) {
  u32 a, b, c, d;
  cpuid(1, 0, &a, &b, &c, &d);
  return (c >> 24) & 1;
}

/* ---- interrupts ---- */
struct idt_entry {
  u16 off_lo, sel;
  u8 ist, type;
  u16 off_mid;
  u32 off_hi, zero;
} __attribute__((packed));

extern const u64 rt_isr_stubs[256];
static struct idt_entry idt[256] __attribute__((aligned(16)));
static rt_handler handlers[256];
/* Exception fixup window for *msr_safe (one CPU at a time, interrupts off). */
static volatile int fault_skip;
static volatile int fault_vector;

void rt_set_handler(u8 vector, rt_handler h) {
  handlers[vector] = h;
}

static void fill_idt(void) {
  for (int i = 0; i < 256; i++) {
    u64 a = rt_isr_stubs[i];
    idt[i].off_lo = (u16)a;
    idt[i].sel = 0x08;
    idt[i].ist = 0;
    idt[i].type = 0x8E; /* present, DPL 0, 64-bit interrupt gate */
    idt[i].off_mid = (u16)(a >> 16);
    idt[i].off_hi = (u32)(a >> 32);
    idt[i].zero = 0;
  }
}

void rt_load_idt(void) {
  struct {
    u16 limit;
    u64 base;
  } __attribute__((packed)) ptr = {sizeof(idt) - 1, (u64)idt};
  __asm__ volatile("lidt %0" ::"m"(ptr));
}

void rt_isr_dispatch(struct rt_frame* f);
void rt_isr_dispatch(struct rt_frame* f) {
  u64 v = f->vector;
  if (v < 32 && fault_skip) {
    fault_vector = (int)v;
    f->rip += (u64)fault_skip;
    fault_skip = 0;
    return;
  }
  if (handlers[v]) {
    handlers[v](f);
    return;
  }
  if (v < 32) {
    rt_fail("unexpected exception %lu (error 0x%lx) at rip 0x%lx", v, f->error_code, f->rip);
    rt_exit();
  }
  if (v == 0xFF) return; /* spurious vector: no EOI, nothing to do */
  rt_fail("unexpected interrupt vector 0x%lx", v);
}

int rdmsr_safe(u32 msr, u64* out) {
  u64 fl = irq_save();
  u32 lo = 0, hi = 0;
  fault_vector = -1;
  fault_skip = 2; /* rdmsr is 0F 32 */
  __asm__ volatile("rdmsr" : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
  fault_skip = 0;
  irq_restore(fl);
  *out = ((u64)hi << 32) | lo;
  return fault_vector;
}

int wrmsr_safe(u32 msr, u64 v) {
  u64 fl = irq_save();
  fault_vector = -1;
  fault_skip = 2; /* wrmsr is 0F 30 */
  __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
  fault_skip = 0;
  irq_restore(fl);
  return fault_vector;
}

/* ---- BSP start-up steps (start.c runs them in order around the legacy devices' setup) ---- */
void rt_boot_cmdline(void) {
  copy_cmdline();
}

void rt_boot_idt(const char* name) {
  fill_idt();
  rt_load_idt();
  rt_printf("apicv guest %s: cmdline '%s'\n", name, cmdline_buf);
  if (rt_mb_magic != 0x2BADB002)
    rt_printf("warning: not entered by multiboot (eax=0x%x)\n", rt_mb_magic);
}
