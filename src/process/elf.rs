//! ELF files the target has mapped: symbols, sections and the load bias (goblin).

use super::maps::MapRange;
use anyhow::{Context, Result};
use goblin::elf::{program_header::PT_LOAD, Elf};
use std::collections::HashMap;
use std::path::Path;

/// What we need from one ELF file: a few symbols, a few sections, its load segments.
/// The file is memory-mapped, not read: a 30 MB libpython costs only the pages touched.
#[derive(Debug, Default)]
pub struct ElfInfo {
    /// Symbol name → (virtual address, size), from `.dynsym` and `.symtab`.
    pub symbols: HashMap<String, (u64, u64)>,
    /// Section name → (virtual address, size, file offset).
    pub sections: HashMap<String, (u64, u64, u64)>,
    /// PT_LOAD segments: (file offset, virtual address).
    pub loads: Vec<(u64, u64)>,
    /// The GNU build id (`NT_GNU_BUILD_ID`), which names the file's separate debug file.
    pub build_id: Option<Vec<u8>>,
    /// The name in `.gnu_debuglink`: the separate debug file, by name.
    pub debuglink: Option<String>,
    /// Where `.rodata` is in the file (for the version string of old interpreters).
    rodata_range: (usize, usize),
    map: Option<memmap2::Mmap>,
}

/// Symbols we look for; everything else is dropped so a big libpython costs little memory.
const WANTED: &[&str] = &[
    "_PyRuntime",
    "Py_Version",
    "interp_head",
    "_PyThreadState_Current",
    "_Py_DebugOffsets",
];

impl ElfInfo {
    pub fn open(path: &Path) -> Result<ElfInfo> {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        // SAFETY: the mapping is read-only and private; a file truncated under us would
        // fault, which is why only files the target has mapped (and so keeps) are opened.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        let mut info =
            Self::parse(&map).with_context(|| format!("parsing ELF file {}", path.display()))?;
        info.map = Some(map);
        Ok(info)
    }

    /// The bytes of `.rodata` (empty if the file has none).
    pub fn rodata(&self) -> &[u8] {
        match &self.map {
            Some(m) => m
                .get(self.rodata_range.0..self.rodata_range.1)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    pub fn parse(data: &[u8]) -> Result<ElfInfo> {
        let elf = Elf::parse(data)?;
        let mut info = ElfInfo::default();
        for (syms, strtab) in [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)] {
            for sym in syms.iter() {
                if sym.st_value == 0 {
                    continue;
                }
                if let Some(name) = strtab.get_at(sym.st_name) {
                    if WANTED.contains(&name) {
                        info.symbols
                            .entry(name.to_string())
                            .or_insert((sym.st_value, sym.st_size));
                    }
                }
            }
        }
        for sh in &elf.section_headers {
            if let Some(name) = elf.shdr_strtab.get_at(sh.sh_name) {
                info.sections
                    .insert(name.to_string(), (sh.sh_addr, sh.sh_size, sh.sh_offset));
                if name == ".rodata" {
                    let start = sh.sh_offset as usize;
                    let end = start.saturating_add(sh.sh_size as usize).min(data.len());
                    if start < end {
                        info.rodata_range = (start, end);
                    }
                }
            }
        }
        for ph in &elf.program_headers {
            if ph.p_type == PT_LOAD {
                info.loads.push((ph.p_offset, ph.p_vaddr));
            }
        }
        if let Some(notes) = elf.iter_note_headers(data) {
            for note in notes.flatten() {
                if note.n_type == goblin::elf::note::NT_GNU_BUILD_ID && note.name == "GNU" {
                    info.build_id = Some(note.desc.to_vec());
                }
            }
        }
        if let Some(&(_, size, off)) = info.sections.get(".gnu_debuglink") {
            let (off, size) = (off as usize, size as usize);
            if let Some(b) = data.get(off..off.saturating_add(size)) {
                let name = b.split(|&c| c == 0).next().unwrap_or(&[]);
                if !name.is_empty() {
                    info.debuglink = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        Ok(info)
    }

    /// The difference between where the file is mapped in the target and its link-time
    /// addresses, found by matching a PT_LOAD segment to the mapping of its file offset.
    pub fn load_bias(&self, file_maps: &[&MapRange]) -> Option<u64> {
        const PAGE: u64 = 0xfff;
        for &(off, vaddr) in &self.loads {
            if let Some(m) = file_maps.iter().find(|m| m.offset == off & !PAGE) {
                return Some(m.start.wrapping_sub(vaddr & !PAGE));
            }
        }
        None
    }

    /// The bytes of section `name` in the file (None if absent, empty in the file such
    /// as `.bss`, or not within it).
    pub fn section_data(&self, name: &str) -> Option<&[u8]> {
        let &(_, size, offset) = self.sections.get(name)?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        self.map.as_ref()?.get(start..end).filter(|b| !b.is_empty())
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).map(|s| s.0)
    }

    pub fn section(&self, name: &str) -> Option<(u64, u64)> {
        self.sections.get(name).map(|s| (s.0, s.1))
    }
}
