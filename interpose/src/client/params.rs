//! Packing kernel arguments into the parameter buffer a launch carries.

use remora_wire::Status;

/// Lay `args` out at the offsets of `layout` ((offset, size) per parameter, as
/// `cuFuncGetParamInfo` or the cubin's `.nv.info` give them). Each argument must be exactly
/// its parameter's size.
pub fn pack_params(layout: &[(u32, u32)], args: &[&[u8]]) -> Result<Vec<u8>, Status> {
    if layout.len() != args.len() {
        return Err(Status::INVALID_VALUE);
    }
    let total = layout.iter().map(|&(o, s)| o as usize + s as usize).max().unwrap_or(0);
    let mut buf = vec![0u8; total];
    for (&(offset, size), arg) in layout.iter().zip(args) {
        if arg.len() != size as usize {
            return Err(Status::INVALID_VALUE);
        }
        buf[offset as usize..offset as usize + size as usize].copy_from_slice(arg);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_at_offsets_with_padding() {
        let layout = [(0, 4), (8, 8), (16, 8), (24, 8)];
        let a = 2.0f32.to_le_bytes();
        let x = 0x1000u64.to_le_bytes();
        let y = 0x2000u64.to_le_bytes();
        let n = 10u64.to_le_bytes();
        let buf = pack_params(&layout, &[&a, &x, &y, &n]).unwrap();
        assert_eq!(buf.len(), 32);
        assert_eq!(&buf[0..4], &a);
        assert_eq!(&buf[4..8], &[0; 4]);
        assert_eq!(&buf[8..16], &x);
        assert_eq!(&buf[24..32], &n);
        assert_eq!(pack_params(&layout, &[&a]), Err(Status::INVALID_VALUE));
        assert_eq!(pack_params(&layout[..1], &[&x]), Err(Status::INVALID_VALUE));
        assert_eq!(pack_params(&[], &[]), Ok(vec![]));
    }
}
