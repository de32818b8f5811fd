//! The process's resident memory and open file descriptors, read from `/proc/self` at scrape
//! time (Linux; elsewhere both read as absent).

/// The resident set size in bytes, from `/proc/self/statm` (its second field, in pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// How many file descriptors the process holds open.
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle used to read it is one of the entries; it is not the process's.
    Some((entries.count() as u64).saturating_sub(1))
}

/// The kernel's page size. `/proc/self/smaps` would say, but reading it costs a walk over every
/// mapping; 4 KiB is the page size on every platform gridmq is built for but aarch64 kernels
/// configured for 64 KiB pages, where `AT_PAGESZ` in `/proc/self/auxv` tells.
fn page_size() -> u64 {
    auxv_page_size().unwrap_or(4096)
}

/// `AT_PAGESZ` (6) from the auxiliary vector: pairs of native-endian machine words.
fn auxv_page_size() -> Option<u64> {
    let auxv = std::fs::read("/proc/self/auxv").ok()?;
    let word = std::mem::size_of::<usize>();
    auxv.chunks_exact(word * 2).find_map(|pair| {
        let (key, value) = pair.split_at(word);
        let key = usize::from_ne_bytes(key.try_into().ok()?);
        let value = usize::from_ne_bytes(value.try_into().ok()?);
        (key == 6).then_some(value as u64)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::resident_bytes().is_some_and(|bytes| bytes > 1 << 20));
        assert!(super::open_fds().is_some_and(|fds| fds >= 3));
    }
}
