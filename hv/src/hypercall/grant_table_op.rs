//! `grant_table_op` (20): query_size, setup_table, set_version (1),
//! get_version ([`crate::xen::grant`] holds the table).

use memops::TableMem;

use super::{le16, le32, le64, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::grant;
use crate::xen::Errno;

/// `grant_table_op(...)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(grant_table_op(
        super::low32(a[0]),
        a[1],
        super::low32(a[2]),
        ctx,
    ))
}

/// Handle `GNTTABOP_<cmd>` on `count` structs at `arg` (a VA of the caller).
///
/// # Errors
/// Xen's errno for each sub-op.
pub fn grant_table_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    use grant::op;
    match cmd {
        op::QUERY_SIZE | op::SETUP_TABLE if count > 16 => Err(Errno::EINVAL),
        op::QUERY_SIZE => {
            for i in 0..u64::from(count) {
                let at = arg + i * grant::QUERY_SIZE_LEN as u64;
                let b = ctx.read::<{ grant::QUERY_SIZE_LEN }>(GuestVa(at))?;
                let mut out = [0u8; 12];
                match ctx.self_or(le16(&b, 0)) {
                    Ok(d) if d == ctx.caller => {
                        let (n, max) = ctx.me()?.xen.grant.query_size();
                        out[0..4].copy_from_slice(&n.to_le_bytes());
                        out[4..8].copy_from_slice(&max.to_le_bytes());
                        out[8..10].copy_from_slice(&grant::GNTST_OKAY.to_le_bytes());
                    }
                    _ => out[8..10].copy_from_slice(&grant::GNTST_BAD_DOMAIN.to_le_bytes()),
                }
                ctx.write(GuestVa(at + 4), &out)?;
            }
            Ok(0)
        }
        op::SETUP_TABLE => {
            for i in 0..u64::from(count) {
                let at = arg + i * grant::SETUP_TABLE_LEN as u64;
                let b = ctx.read::<{ grant::SETUP_TABLE_LEN }>(GuestVa(at))?;
                let list = le64(&b, 16);
                let status = match ctx.self_or(le16(&b, 0)) {
                    Ok(d) if d == ctx.caller => {
                        match ctx.me()?.xen.grant.setup_table(le32(&b, 4)) {
                            Ok(gfns) => {
                                for (j, g) in gfns.iter().enumerate() {
                                    ctx.write(GuestVa(list + j as u64 * 8), &g.to_le_bytes())?;
                                }
                                grant::GNTST_OKAY
                            }
                            Err(s) => s,
                        }
                    }
                    _ => grant::GNTST_BAD_DOMAIN,
                };
                ctx.write(GuestVa(at + 8), &status.to_le_bytes())?;
            }
            Ok(0)
        }
        op::SET_VERSION => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let b = ctx.read::<4>(GuestVa(arg))?;
            let r = ctx.me()?.xen.grant.set_version(le32(&b, 0));
            // The version in use goes back either way.
            ctx.write(GuestVa(arg), &1u32.to_le_bytes())?;
            r.map(|()| 0)
        }
        op::GET_VERSION => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let b = ctx.read::<8>(GuestVa(arg))?;
            ctx.self_or(le16(&b, 0))?;
            ctx.write(GuestVa(arg + 4), &1u32.to_le_bytes())?;
            Ok(0)
        }
        // GNTTABOP_cache_flush (12) among them: hv has no cache-maintenance
        // hook yet, and Linux then bounces foreign-page DMA of non-coherent
        // devices through swiotlb (arch/arm/xen/mm.c: hypercall_cflush false).
        other => {
            let c = ctx.caller;
            crate::glog!(c, Debug, "d{c}: GNTTABOP {other} not implemented: -ENOSYS");
            Err(Errno::ENOSYS)
        }
    }
}
