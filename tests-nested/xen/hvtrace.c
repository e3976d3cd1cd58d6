/*
 * hvtrace: a QEMU TCG plugin (plugin API v4, QEMU 10.0) that counts, per phase of a run,
 *   - every Xen hypercall executed at EL1 (`hvc #0xea1`, encoding 0xd401d422), by hypercall
 *     number (x16) and sub-op: memory_op x0 & 0x3f (MEMOP_CMD_MASK); domctl, sysctl,
 *     platform_op and xsm_op the u32 `cmd` at the start of the struct x0 points to; the calls
 *     inside a multicall (x0 = entries, x1 = count) as "multicall>name:sub"; others x0;
 *   - every TLBI instruction executed, by operation (op1, CRm, op2) and exception level;
 *   - the grant operations asked for: grant_table_op(cmd = x0, uop = x1, count = x2) moves
 *     `count` operations per call, so for GNTTABOP_map_grant_ref (0), unmap_grant_ref (1) and
 *     copy (5) (xen/include/public/grant_table.h) the `count` arguments are summed as well, as
 *     "gntop <name>" (a call inside a multicall: its args[2]).
 * Phases are cut by the guest's own console lines: a CONSOLEIO_write (console_io, x0 = 0)
 * whose text starts with "DOM0: " ends the current phase and names the next one after the
 * words that follow (up to ":", " on ", " t=" or the end of the line). The same counting works on any
 * hypervisor that implements Xen's hypercall ABI (Xen itself, hv), so the two are comparable.
 *
 * Build: gcc -shared -fPIC -O2 -o hvtrace.so hvtrace.c   (no QEMU or glib headers needed: the
 * few declarations used are below, written from QEMU's documented plugin API; glib's symbols
 * resolve against the QEMU binary that loads the plugin).
 * Use:   qemu-system-aarch64 ... -plugin ./hvtrace.so,out=FILE
 * Output (FILE, default stderr), one line per counter at the end of each phase:
 *   PHASE <n> <name> <hypercall>[:<sub>] <count>
 *   PHASE <n> <name> tlbi <OPERATION> el<N> <count>
 *   PHASE <n> <name> gntop <map_grant_ref|unmap_grant_ref|copy> <sum of count arguments>
 * (a reader summing hypercalls takes the lines that are neither "tlbi" nor "gntop").
 *   END <n> <name>
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plugin API, as documented in QEMU's include/qemu/qemu-plugin.h (v4) ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min, cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus, max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_register;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef struct { unsigned char *data; unsigned len; } GByteArray;
typedef struct { char *data; unsigned len; } GArray;
typedef struct { struct qemu_plugin_register *handle; const char *name; const char *feature; }
    qemu_plugin_reg_descriptor;
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int, void *);
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t, unsigned int);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t, qemu_plugin_vcpu_simple_cb_t);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, qemu_plugin_vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *, void *, size_t);
GArray *qemu_plugin_get_registers(void);
int qemu_plugin_read_register(struct qemu_plugin_register *, GByteArray *);
bool qemu_plugin_read_memory_vaddr(uint64_t, GByteArray *, size_t);
/* glib, from the QEMU process */
GByteArray *g_byte_array_new(void);
GByteArray *g_byte_array_set_size(GByteArray *, unsigned);

__attribute__((visibility("default"))) int qemu_plugin_version = 4;

/* ---- counters ---- */
#define MAXC 1024
struct counter { char key[64]; uint64_t n; };
static struct counter counters[MAXC];
static int ncounters;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;
static int phase;
static char phase_name[128] = "boot";

/* x0..x5, x16, cpsr (PSTATE, EL in bits 3:2) */
static struct qemu_plugin_register *reg_x[6], *reg_x16, *reg_cpsr;
static __thread GByteArray *rbuf, *mbuf;

static void bump_n(const char *key, uint64_t n)
{
    for (int i = 0; i < ncounters; i++) {
        if (strcmp(counters[i].key, key) == 0) {
            counters[i].n += n;
            return;
        }
    }
    if (ncounters < MAXC) {
        snprintf(counters[ncounters].key, sizeof counters[ncounters].key, "%s", key);
        counters[ncounters++].n = n;
    }
}

static void bump(const char *key) { bump_n(key, 1); }

/* grant_table_op(cmd, uop, count): the operations it carries ("gntop <name>", count summed),
 * for the commands whose `count` is a number of grant operations. Called with `lock` held. */
static void gntop(uint64_t cmd, uint64_t count)
{
    const char *n = cmd == 0 ? "map_grant_ref" : cmd == 1 ? "unmap_grant_ref" : cmd == 5 ? "copy" : NULL;
    char key[64];
    if (!n)
        return;
    snprintf(key, sizeof key, "gntop %s", n);
    bump_n(key, count);
}

static void flush_phase(const char *next)
{
    for (int i = 0; i < ncounters; i++)
        fprintf(out, "PHASE %d %s %s %" PRIu64 "\n", phase, phase_name, counters[i].key, counters[i].n);
    fprintf(out, "END %d %s\n", phase, phase_name);
    fflush(out);
    ncounters = 0;
    phase++;
    snprintf(phase_name, sizeof phase_name, "%s", next);
}

static uint64_t rd(struct qemu_plugin_register *r)
{
    uint64_t v = 0;
    if (!r)
        return 0;
    if (!rbuf)
        rbuf = g_byte_array_new();
    g_byte_array_set_size(rbuf, 0);
    int n = qemu_plugin_read_register(r, rbuf);
    if (n > 0)
        memcpy(&v, rbuf->data, n < 8 ? (size_t)n : 8); /* target (little-endian) order */
    return v;
}

static bool rdmem(uint64_t va, void *dst, size_t len)
{
    if (!mbuf)
        mbuf = g_byte_array_new();
    if (!qemu_plugin_read_memory_vaddr(va, mbuf, len) || mbuf->len < len)
        return false;
    memcpy(dst, mbuf->data, len);
    return true;
}

static const char *hc_name(uint64_t nr)
{
    switch (nr) {
    case 7: return "platform_op";
    case 12: return "memory_op";
    case 13: return "multicall";
    case 17: return "xen_version";
    case 18: return "console_io";
    case 20: return "grant_table_op";
    case 21: return "vm_assist";
    case 24: return "vcpu_op";
    case 27: return "xsm_op";
    case 29: return "sched_op";
    case 32: return "event_channel_op";
    case 33: return "physdev_op";
    case 34: return "hvm_op";
    case 35: return "sysctl";
    case 36: return "domctl";
    case 38: return "dm_op";
    case 41: return "hypfs_op";
    default: return NULL;
    }
}

/* "name:sub" of one call; x0 is the first argument. */
static void hc_key(char *key, size_t len, const char *prefix, uint64_t nr, uint64_t x0)
{
    const char *name = hc_name(nr);
    char nm[24];
    if (!name) {
        snprintf(nm, sizeof nm, "hc%" PRIu64, nr);
        name = nm;
    }
    uint32_t cmd;
    switch (nr) {
    case 12:
        snprintf(key, len, "%s%s:%" PRIu64, prefix, name, x0 & 0x3f);
        break;
    case 7: case 27: case 35: case 36:
        /* The struct is in user memory for privcmd calls; the kernel issues them with PSTATE.PAN
         * set (Xen reads guest memory with AT, which ignores PAN), and QEMU's debug read honours
         * PAN, so such a cmd is unreadable here: "?" then. */
        if (rdmem(x0, &cmd, 4))
            snprintf(key, len, "%s%s:%u", prefix, name, cmd);
        else
            snprintf(key, len, "%s%s:?", prefix, name);
        break;
    case 13:
        snprintf(key, len, "%s%s", prefix, name);
        break;
    default:
        snprintf(key, len, "%s%s:%" PRIu64, prefix, name, x0);
    }
}

static void on_hvc(unsigned int vcpu, void *udata)
{
    (void)vcpu; (void)udata;
    if (((rd(reg_cpsr) >> 2) & 3) != 1)
        return; /* only EL1 guests' hypercalls */
    uint64_t nr = rd(reg_x16), x0 = rd(reg_x[0]), x1 = rd(reg_x[1]);
    char key[64];
    hc_key(key, sizeof key, "", nr, x0);
    char next[128] = "";
    if (nr == 13) {
        /* struct multicall_entry { xen_ulong_t op, result; xen_ulong_t args[6]; } */
        snprintf(key, sizeof key, "multicall:nr=%" PRIu64, x1);
        for (uint64_t i = 0; i < x1 && i < 64; i++) {
            uint64_t e[8];
            if (!rdmem(x0 + i * sizeof e, e, sizeof e))
                break;
            char k[64];
            hc_key(k, sizeof k, "multicall>", e[0], e[2]);
            pthread_mutex_lock(&lock);
            bump(k);
            if (e[0] == 20)
                gntop(e[2], e[4]);
            pthread_mutex_unlock(&lock);
        }
    }
    if (nr == 18 && x0 == 0) {
        /* console_io(CONSOLEIO_write, len = x1, buf = x2) */
        char text[160];
        size_t n = x1 < sizeof text - 1 ? x1 : sizeof text - 1;
        if (n > 6 && rdmem(rd(reg_x[2]), text, n)) {
            text[n] = 0;
            char *m = strstr(text, "DOM0: ");
            if (m == text || (m && (m[-1] == '\n' || m[-1] == '\r'))) {
                char *s = m + 6, *e = s;
                while (*e && *e != '\n' && *e != '\r' && *e != ':' && strncmp(e, " t=", 3) != 0 &&
                       strncmp(e, " on ", 4) != 0)
                    e++;
                size_t l = (size_t)(e - s) < sizeof next - 1 ? (size_t)(e - s) : sizeof next - 1;
                memcpy(next, s, l);
                next[l] = 0;
                for (char *c = next; *c; c++)
                    if (*c == ' ')
                        *c = '_';
            }
        }
    }
    pthread_mutex_lock(&lock);
    bump(key);
    if (nr == 20)
        gntop(x0, rd(reg_x[2]));
    if (next[0])
        flush_phase(next);
    pthread_mutex_unlock(&lock);
}

static const char *tlbi_name(unsigned op1, unsigned crm, unsigned op2)
{
    /* Arm ARM C5.5 (TLBI), the operations hypervisors and Linux use */
    static const struct { unsigned op1, crm, op2; const char *n; } t[] = {
        {0, 3, 0, "VMALLE1IS"}, {0, 3, 1, "VAE1IS"}, {0, 3, 2, "ASIDE1IS"}, {0, 3, 3, "VAAE1IS"},
        {0, 3, 5, "VALE1IS"}, {0, 3, 7, "VAALE1IS"}, {0, 7, 0, "VMALLE1"}, {0, 7, 1, "VAE1"},
        {0, 7, 2, "ASIDE1"}, {0, 7, 3, "VAAE1"}, {0, 7, 5, "VALE1"}, {0, 7, 7, "VAALE1"},
        {0, 2, 1, "RVAE1IS"}, {0, 2, 3, "RVAAE1IS"}, {0, 2, 5, "RVALE1IS"}, {0, 2, 7, "RVAALE1IS"},
        {0, 1, 0, "VMALLE1OS"}, {0, 1, 1, "VAE1OS"}, {0, 1, 2, "ASIDE1OS"},
        {4, 0, 1, "IPAS2E1IS"}, {4, 0, 5, "IPAS2LE1IS"}, {4, 4, 1, "IPAS2E1"}, {4, 4, 5, "IPAS2LE1"},
        {4, 0, 2, "RIPAS2E1IS"}, {4, 0, 6, "RIPAS2LE1IS"}, {4, 4, 0, "IPAS2E1OS"},
        {4, 3, 0, "ALLE2IS"}, {4, 3, 1, "VAE2IS"}, {4, 3, 4, "ALLE1IS"}, {4, 3, 5, "VALE2IS"},
        {4, 3, 6, "VMALLS12E1IS"}, {4, 7, 0, "ALLE2"}, {4, 7, 1, "VAE2"}, {4, 7, 4, "ALLE1"},
        {4, 7, 5, "VALE2"}, {4, 7, 6, "VMALLS12E1"}, {4, 1, 4, "ALLE1OS"}, {4, 1, 6, "VMALLS12E1OS"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].op1 == op1 && t[i].crm == crm && t[i].op2 == op2)
            return t[i].n;
    return NULL;
}

static void on_tlbi(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    uint32_t insn = (uint32_t)(uintptr_t)udata;
    unsigned op1 = (insn >> 16) & 7, crm = (insn >> 8) & 15, op2 = (insn >> 5) & 7;
    unsigned el = (rd(reg_cpsr) >> 2) & 3;
    const char *n = tlbi_name(op1, crm, op2);
    char key[64];
    if (n)
        snprintf(key, sizeof key, "tlbi %s el%u", n, el);
    else
        snprintf(key, sizeof key, "tlbi op1=%u,CRm=%u,op2=%u el%u", op1, crm, op2, el);
    pthread_mutex_lock(&lock);
    bump(key);
    pthread_mutex_unlock(&lock);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t op = 0;
        if (qemu_plugin_insn_data(insn, &op, 4) != 4)
            continue;
        if (op == 0xd401d422u) /* hvc #0xea1 */
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_hvc, QEMU_PLUGIN_CB_R_REGS, NULL);
        else if ((op & 0xfff8f000u) == 0xd5088000u) /* SYS op0=1, CRn=8: TLBI */
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_tlbi, QEMU_PLUGIN_CB_R_REGS,
                                                   (void *)(uintptr_t)op);
    }
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu)
{
    (void)id; (void)vcpu;
    if (reg_x16)
        return;
    GArray *regs = qemu_plugin_get_registers();
    qemu_plugin_reg_descriptor *d = (qemu_plugin_reg_descriptor *)regs->data;
    for (unsigned i = 0; i < regs->len; i++) {
        const char *n = d[i].name;
        if (n[0] == 'x' && n[1] >= '0' && n[1] <= '5' && n[2] == 0)
            reg_x[n[1] - '0'] = d[i].handle;
        else if (strcmp(n, "x16") == 0)
            reg_x16 = d[i].handle;
        else if (strcmp(n, "cpsr") == 0)
            reg_cpsr = d[i].handle;
    }
    if (!reg_x16 || !reg_cpsr || !reg_x[0])
        fprintf(stderr, "hvtrace: registers x0/x16/cpsr not found\n");
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    pthread_mutex_lock(&lock);
    flush_phase("exit");
    pthread_mutex_unlock(&lock);
    if (out != stderr)
        fclose(out);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    out = stderr;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
            if (!out) {
                perror(argv[i] + 4);
                return -1;
            }
        } else {
            fprintf(stderr, "hvtrace: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
