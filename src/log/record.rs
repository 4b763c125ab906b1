//! Records and the record-batch format (docs/FORMAT.md): hand-written, little-endian,
//! CRC32C-checked. No serde on this path.

use bytes::{BufMut, Bytes};

/// CRC32C (Castagnoli, CRC-32/ISCSI) of `data`: batches, metadata files, snapshots and key
/// partitioning all use it.
///
/// Two implementations, picked once by what the CPU has: `crc-fast` folds with 512-bit
/// VPCLMULQDQ where AVX-512 has it (~100 GB/s measured on such a host, against ~25 GB/s for
/// the `crc32` instruction); without AVX-512 its fallback folds 128 bits at a time and was
/// slower than the `crc32c` crate's interleaved `crc32` instructions (an AMD EPYC host
/// without AVX-512: 18.2 against 22.5 GB/s on 64 KiB, 18.7 against 24.4 on 1 MiB).
#[must_use]
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    if wide_folding() {
        // The algorithm's checksum is 32 bits wide; the upper half is always zero.
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
    } else {
        crc32c::crc32c(data)
    }
}

/// Whether the CPU folds a CRC 512 bits at a time (AVX-512 with VPCLMULQDQ); read once.
fn wide_folding() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("vpclmulqdq")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Elsewhere crc-fast's own choice (NEON on aarch64) is the one measured.
            true
        }
    })
}

/// Identifies a batch on disk: `b"QPLB"` read as a little-endian `u32`.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"QPLB");
/// The newest batch format this build writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes before the first record.
pub(crate) const HEADER_LEN: usize = 60;
/// No batch may be larger: bounds every allocation made while reading untrusted bytes.
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024 + HEADER_LEN;
/// `producer_id` of batches appended without idempotence.
pub(crate) const NO_PRODUCER: u64 = 0;

const ATTR_TOMBSTONE: u8 = 1;

/// A record to append.
///
/// ```
/// use quipu::Message;
/// let m = Message::new("paid 12.50 USD").with_key("order-17").with_header("source", "app");
/// assert_eq!(m.key.as_deref(), Some(&b"order-17"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Routes the record to a partition and identifies it for compaction.
    pub key: Option<Bytes>,
    /// The payload; `None` is a tombstone (deletes the key under compaction).
    pub value: Option<Bytes>,
    /// Application headers.
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch; `None` takes the log's clock at append time.
    pub timestamp: Option<u64>,
}

impl Message {
    /// A record with this value, no key.
    #[must_use]
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A tombstone for `key`: under compaction it removes every earlier record of the key.
    #[must_use]
    pub fn tombstone(key: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp (milliseconds since the epoch).
    #[must_use]
    pub fn with_timestamp(mut self, millis: u64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Upper bound of this record's encoded size in a batch.
    pub(crate) fn encoded_len(&self) -> usize {
        let mut n = 1 + 10 + 10 + 10 + 10 + 10 + 10;
        n += self.key.as_ref().map_or(0, Bytes::len);
        n += self.value.as_ref().map_or(0, Bytes::len);
        for (k, v) in &self.headers {
            n += 20 + k.len() + v.len();
        }
        n
    }
}

/// A record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Position in its partition.
    pub offset: u64,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Application headers.
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    /// Whether this record is a tombstone.
    #[must_use]
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// This record as a message, for copying it elsewhere (compaction, dead letters).
    #[must_use]
    pub fn to_message(&self) -> Message {
        Message {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
            timestamp: Some(self.timestamp),
        }
    }
}

/// The fixed part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub len: u32,
    pub crc: u32,
    pub flags: u16,
    pub base_offset: u64,
    pub last_offset_delta: u32,
    pub count: u32,
    pub first_timestamp: u64,
    pub max_timestamp: u64,
    pub producer_id: u64,
    pub base_sequence: u32,
}

impl BatchHeader {
    /// The offset after this batch's last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta) + 1
    }
}

/// Why bytes do not decode as a batch. `Incomplete` (more bytes could make it whole) is kept
/// apart from `Invalid` (no amount of bytes will).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Incomplete,
    Invalid(&'static str),
    NewerVersion(u16),
}

/// Producer identity of an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerStamp {
    pub id: u64,
    pub sequence: u32,
}

/// Encodes `msgs` as one batch at the end of `buf`; returns its header.
pub(crate) fn encode_batch(
    buf: &mut Vec<u8>,
    base_offset: u64,
    msgs: &[Message],
    now: u64,
    producer: Option<ProducerStamp>,
) -> BatchHeader {
    let first_ts = msgs.first().and_then(|m| m.timestamp).unwrap_or(now);
    let mut batch = OpenBatch::open(buf, base_offset, first_ts, producer);
    for m in msgs {
        batch.push(buf, m, now);
    }
    batch.seal(buf)
}

/// A batch at the end of a buffer that still takes records; its header and CRC are written
/// when it is sealed. Lets many small appends share one header and one CRC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenBatch {
    /// Where the batch starts in the buffer.
    pub start: usize,
    base_offset: u64,
    count: u32,
    first_ts: u64,
    max_ts: u64,
    producer: Option<ProducerStamp>,
}

impl OpenBatch {
    /// Reserves a header at the end of `buf`.
    pub fn open(
        buf: &mut Vec<u8>,
        base_offset: u64,
        first_ts: u64,
        producer: Option<ProducerStamp>,
    ) -> Self {
        let start = buf.len();
        buf.resize(start + HEADER_LEN, 0);
        Self {
            start,
            base_offset,
            count: 0,
            first_ts,
            max_ts: first_ts,
            producer,
        }
    }

    /// Appends one record; it gets the next offset.
    pub fn push(&mut self, buf: &mut Vec<u8>, m: &Message, now: u64) {
        let ts = m.timestamp.unwrap_or(now);
        self.max_ts = self.max_ts.max(ts);
        let fields = RecordFields {
            ts_delta: zigzag(ts.wrapping_sub(self.first_ts) as i64),
            offset_delta: u64::from(self.count),
            key: m.key.as_deref(),
            value: m.value.as_deref(),
            headers: &m.headers,
        };
        fields.put(buf);
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The first record's timestamp.
    pub fn first_timestamp(&self) -> u64 {
        self.first_ts
    }

    /// Sets the offset of the batch's first record (records carry only their delta from it).
    pub fn set_base_offset(&mut self, base: u64) {
        self.base_offset = base;
    }

    /// Moves every record's timestamp `by` ms later (records carry only their delta from the
    /// first one).
    pub fn delay(&mut self, by: u64) {
        self.first_ts = self.first_ts.saturating_add(by);
        self.max_ts = self.max_ts.saturating_add(by);
    }

    /// Largest timestamp of the records pushed so far.
    pub fn max_timestamp(&self) -> u64 {
        self.max_ts
    }

    /// Bytes the batch takes so far.
    pub fn len(&self, buf: &[u8]) -> usize {
        buf.len() - self.start
    }

    /// Writes the header and CRC.
    pub fn seal(self, buf: &mut [u8]) -> BatchHeader {
        let header = BatchHeader {
            len: u32::try_from(buf.len() - self.start).unwrap_or(u32::MAX),
            crc: 0,
            flags: 0,
            base_offset: self.base_offset,
            last_offset_delta: self.count.saturating_sub(1),
            count: self.count,
            first_timestamp: self.first_ts,
            max_timestamp: self.max_ts,
            producer_id: self.producer.map_or(NO_PRODUCER, |p| p.id),
            base_sequence: self.producer.map_or(0, |p| p.sequence),
        };
        finish_batch(&mut buf[self.start..], header)
    }
}

/// Writes `header` into the first `HEADER_LEN` bytes of `batch` and seals it with its CRC.
pub(crate) fn finish_batch(batch: &mut [u8], mut header: BatchHeader) -> BatchHeader {
    let mut h = &mut batch[..HEADER_LEN];
    h.put_u32_le(MAGIC);
    h.put_u16_le(FORMAT_VERSION);
    h.put_u32_le(header.len);
    h.put_u32_le(0);
    h.put_u16_le(header.flags);
    h.put_u64_le(header.base_offset);
    h.put_u32_le(header.last_offset_delta);
    h.put_u32_le(header.count);
    h.put_u64_le(header.first_timestamp);
    h.put_u64_le(header.max_timestamp);
    h.put_u64_le(header.producer_id);
    h.put_u32_le(header.base_sequence);
    header.crc = crc32c(&batch[14..]);
    batch[10..14].copy_from_slice(&header.crc.to_le_bytes());
    header
}

/// Re-encodes the records of one batch that survive compaction, keeping their offsets,
/// timestamps and the batch's producer stamp.
pub(crate) fn encode_kept(buf: &mut Vec<u8>, original: &BatchHeader, kept: &[Record]) {
    let start = buf.len();
    buf.resize(start + HEADER_LEN, 0);
    let first_ts = original.first_timestamp;
    for r in kept {
        let fields = RecordFields {
            ts_delta: zigzag(r.timestamp.wrapping_sub(first_ts) as i64),
            offset_delta: r.offset - original.base_offset,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &r.headers,
        };
        fields.put(buf);
    }
    let header = BatchHeader {
        len: u32::try_from(buf.len() - start).unwrap_or(u32::MAX),
        count: u32::try_from(kept.len()).unwrap_or(u32::MAX),
        ..*original
    };
    finish_batch(&mut buf[start..], header);
}

/// The length of the longest prefix of `bytes` made of whole batches: the write buffer's
/// batches, all sealed, that a write cut at `bytes.len()` holds entirely.
pub(crate) fn whole_batches_len(bytes: &[u8]) -> usize {
    let mut pos = 0;
    while let Ok(h) = decode_header(&bytes[pos..]) {
        let len = h.len as usize;
        if len < HEADER_LEN || len > bytes.len() - pos {
            break;
        }
        pos += len;
    }
    pos
}

/// Parses the fixed header at the start of `bytes` without checking the CRC.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != MAGIC {
        return Err(DecodeError::Invalid("bad magic"));
    }
    let version = u16_at(4);
    if version > FORMAT_VERSION {
        return Err(DecodeError::NewerVersion(version));
    }
    if version == 0 {
        return Err(DecodeError::Invalid("format version 0"));
    }
    let header = BatchHeader {
        len: u32_at(6),
        crc: u32_at(10),
        flags: u16_at(14),
        base_offset: u64_at(16),
        last_offset_delta: u32_at(24),
        count: u32_at(28),
        first_timestamp: u64_at(32),
        max_timestamp: u64_at(40),
        producer_id: u64_at(48),
        base_sequence: u32_at(56),
    };
    let len = header.len as usize;
    if !(HEADER_LEN..=MAX_BATCH_BYTES).contains(&len) {
        return Err(DecodeError::Invalid("batch length out of range"));
    }
    if header.count > header.last_offset_delta.saturating_add(1) {
        return Err(DecodeError::Invalid("more records than offsets"));
    }
    if header
        .base_offset
        .checked_add(u64::from(header.last_offset_delta) + 1)
        .is_none()
    {
        return Err(DecodeError::Invalid("offset overflow"));
    }
    Ok(header)
}

/// Checks a whole batch (header included) against its CRC.
pub(crate) fn verify(batch: &[u8], header: &BatchHeader) -> Result<(), DecodeError> {
    if batch.len() < header.len as usize {
        return Err(DecodeError::Incomplete);
    }
    if crc32c(&batch[14..header.len as usize]) != header.crc {
        return Err(DecodeError::Invalid("crc mismatch"));
    }
    Ok(())
}

/// Decodes the records of a verified batch. `batch` holds exactly the batch's bytes; keys,
/// values and header values are slices of it, not copies.
pub(crate) fn decode_records(
    batch: &Bytes,
    header: &BatchHeader,
    out: &mut Vec<Record>,
) -> Result<(), DecodeError> {
    let start_len = out.len();
    out.reserve(header.count as usize);
    let slice = |b: &[u8]| batch.slice_ref(b);
    for raw in RawRecords::new(batch, header) {
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                out.truncate(start_len);
                return Err(e);
            }
        };
        let headers = raw
            .headers()
            .map(|(name, value)| (name.to_owned(), slice(value)))
            .collect();
        out.push(Record {
            offset: raw.offset,
            timestamp: raw.timestamp,
            key: raw.key.map(slice),
            value: raw.value.map(slice),
            headers,
        });
    }
    Ok(())
}

/// One record of a batch, borrowed from the batch's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    pub offset: u64,
    pub timestamp: u64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The encoded headers (already checked) and how many there are.
    headers: &'a [u8],
    header_count: u64,
}

impl<'a> RawRecord<'a> {
    /// The record's headers: names and values.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let (bytes, mut pos) = (self.headers, 0);
        (0..self.header_count).map_while(move |_| {
            let (name, value) = read_header(bytes, &mut pos, bytes.len()).ok()?;
            Some((name, value))
        })
    }
}

/// The records of a verified batch, one at a time, each checked as it is decoded; the last
/// item is an error if the batch's length disagrees with its records.
#[derive(Debug, Clone)]
pub(crate) struct RawRecords<'a> {
    batch: &'a [u8],
    base_offset: u64,
    first_timestamp: u64,
    last_offset_delta: u64,
    pos: usize,
    left: u32,
    last_delta: Option<u64>,
    done: bool,
}

impl<'a> RawRecords<'a> {
    pub fn new(batch: &'a [u8], header: &BatchHeader) -> Self {
        let end = (header.len as usize).min(batch.len());
        Self {
            batch: &batch[..end],
            base_offset: header.base_offset,
            first_timestamp: header.first_timestamp,
            last_offset_delta: u64::from(header.last_offset_delta),
            pos: HEADER_LEN.min(end),
            left: header.count,
            last_delta: None,
            done: false,
        }
    }

    #[inline]
    fn next_record(&mut self) -> Result<RawRecord<'a>, DecodeError> {
        let batch = self.batch;
        let end = batch.len();
        let pos = &mut self.pos;
        let rec_len = get_varint(batch, pos, end)? as usize;
        let rec_end = pos
            .checked_add(rec_len)
            .filter(|&e| e <= end)
            .ok_or(DecodeError::Invalid("record overruns batch"))?;
        let attrs = *batch
            .get(*pos)
            .ok_or(DecodeError::Invalid("empty record"))?;
        *pos += 1;
        let ts_delta = unzigzag(get_varint(batch, pos, rec_end)?);
        let offset_delta = get_varint(batch, pos, rec_end)?;
        if offset_delta > self.last_offset_delta
            || self.last_delta.is_some_and(|d| d >= offset_delta)
        {
            return Err(DecodeError::Invalid("offset delta out of order"));
        }
        self.last_delta = Some(offset_delta);
        let key = get_opt_slice(batch, pos, rec_end)?;
        let value = get_opt_slice(batch, pos, rec_end)?;
        if (attrs & ATTR_TOMBSTONE != 0) != value.is_none() {
            return Err(DecodeError::Invalid("tombstone flag disagrees with value"));
        }
        let header_count = get_varint(batch, pos, rec_end)?;
        let headers_start = *pos;
        for _ in 0..header_count {
            read_header(batch, pos, rec_end)?;
        }
        if *pos != rec_end {
            return Err(DecodeError::Invalid(
                "record length disagrees with contents",
            ));
        }
        Ok(RawRecord {
            offset: self.base_offset + offset_delta,
            timestamp: self.first_timestamp.wrapping_add(ts_delta as u64),
            key,
            value,
            headers: &batch[headers_start..rec_end],
            header_count,
        })
    }
}

impl<'a> Iterator for RawRecords<'a> {
    type Item = Result<RawRecord<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (self.pos != self.batch.len()).then_some(Err(DecodeError::Invalid(
                "batch length disagrees with records",
            )));
        }
        self.left -= 1;
        let item = self.next_record();
        self.done = item.is_err();
        Some(item)
    }
}

/// Reads one header (name, value) at `pos`, checking bounds and that the name is UTF-8.
fn read_header<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    end: usize,
) -> Result<(&'a str, &'a [u8]), DecodeError> {
    let klen = get_varint(buf, pos, end)? as usize;
    let kend = pos
        .checked_add(klen)
        .filter(|&e| e <= end)
        .ok_or(DecodeError::Invalid("header overruns record"))?;
    let name = std::str::from_utf8(&buf[*pos..kend])
        .map_err(|_| DecodeError::Invalid("header name is not utf-8"))?;
    *pos = kend;
    let vlen = get_varint(buf, pos, end)? as usize;
    let vend = pos
        .checked_add(vlen)
        .filter(|&e| e <= end)
        .ok_or(DecodeError::Invalid("header overruns record"))?;
    let value = &buf[*pos..vend];
    *pos = vend;
    Ok((name, value))
}

/// One record's fields, written length-first without an intermediate buffer.
struct RecordFields<'a> {
    ts_delta: u64,
    offset_delta: u64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [(String, Bytes)],
}

impl RecordFields<'_> {
    /// Writes the record. Its small fields are assembled on the stack and copied with the key
    /// and value in as few copies as possible: a push per varint byte (a capacity check each)
    /// and a `memcpy` call per field were most of the cost of appending a small record.
    #[inline]
    fn put(&self, buf: &mut Vec<u8>) {
        if !(self.headers.is_empty() && self.put_small(buf)) {
            self.put_general(buf);
        }
    }

    /// [`put`](Self::put) for any record.
    #[inline(never)]
    fn put_general(&self, buf: &mut Vec<u8>) {
        let mut head = Scratch::new();
        head.byte(if self.value.is_none() {
            ATTR_TOMBSTONE
        } else {
            0
        });
        head.varint(self.ts_delta);
        head.varint(self.offset_delta);
        put_opt_len(&mut head, self.key);
        let mut mid = Scratch::new();
        // The value's length goes into `head` too when there is no key between them.
        put_opt_len(
            if self.key.is_some() {
                &mut mid
            } else {
                &mut head
            },
            self.value,
        );
        let key = self.key.unwrap_or_default();
        let value = self.value.unwrap_or_default();
        let mut len = head.len() + key.len() + mid.len() + value.len();
        len += varint_len(self.headers.len() as u64);
        for (k, v) in self.headers {
            len += varint_len(k.len() as u64) + k.len() + varint_len(v.len() as u64) + v.len();
        }
        head.prefix_varint(len as u64);
        buf.reserve(head.len() + len);
        buf.extend_from_slice(head.bytes());
        if self.key.is_some() {
            buf.extend_from_slice(key);
            buf.extend_from_slice(mid.bytes());
        }
        buf.extend_from_slice(value);
        put_varint(buf, self.headers.len() as u64);
        for (k, v) in self.headers {
            put_varint(buf, k.len() as u64);
            buf.extend_from_slice(k.as_bytes());
            put_varint(buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
    }
}

impl RecordFields<'_> {
    /// [`put`](Self::put) for the common record: no headers, and every length and delta
    /// below 2^14 (a varint of one or two bytes). The small fields are computed as words and
    /// stored 8 bytes at a time (cut back to what they take): the length, attributes and deltas
    /// in one store, the key's length (and the value's, when there is no key) in another;
    /// only the key and the value need a `memcpy` call. Returns `false`, writing nothing, for
    /// a record it does not cover. (Measured on 100-byte records: bytes stored one by one and
    /// read back as a block stall on store forwarding, and shifts of a 128-bit register by a
    /// variable amount cost several instructions each; this path has neither.)
    #[inline(always)]
    fn put_small(&self, buf: &mut Vec<u8>) -> bool {
        let key_len = opt_len(self.key);
        let value_len = opt_len(self.value);
        if (self.ts_delta | self.offset_delta | key_len | value_len) >= SMALL_LIMIT {
            return false;
        }
        let (ts, ts_n) = varint14(self.ts_delta);
        let (off, off_n) = varint14(self.offset_delta);
        let (klen, klen_n) = varint14(key_len);
        let (vlen, vlen_n) = varint14(value_len);
        let key = self.key.unwrap_or_default();
        let value = self.value.unwrap_or_default();
        // Attributes, deltas, both lengths, key, value and the header count (0).
        let body = 1 + ts_n + off_n + klen_n + key.len() + vlen_n + value.len() + 1;
        if body as u64 >= SMALL_LIMIT {
            return false;
        }
        let (len, len_n) = varint14(body as u64);
        let attr = if self.value.is_none() {
            u64::from(ATTR_TOMBSTONE)
        } else {
            0
        };
        // At most 2 + 1 + 2 + 2 bytes.
        let head =
            len | attr << (8 * len_n) | ts << (8 * (len_n + 1)) | off << (8 * (len_n + 1 + ts_n));
        buf.reserve(len_n + body + 16);
        put_word(buf, head, len_n + 1 + ts_n + off_n);
        if self.key.is_none() {
            // At most 1 + 2 bytes.
            put_word(buf, klen | vlen << (8 * klen_n), klen_n + vlen_n);
        } else {
            put_word(buf, klen, klen_n);
            buf.extend_from_slice(key);
            put_word(buf, vlen, vlen_n);
        }
        buf.extend_from_slice(value);
        buf.push(0);
        true
    }
}

/// Lengths and deltas the small-record path covers are below this: their varints take one
/// or two bytes.
const SMALL_LIMIT: u64 = 1 << 14;

/// The varint of `v` (below [`SMALL_LIMIT`]) as a little-endian word, and its length.
#[inline]
fn varint14(v: u64) -> (u64, usize) {
    if v < 0x80 {
        (v, 1)
    } else {
        ((v & 0x7f) | 0x80 | (v >> 7) << 8, 2)
    }
}

/// Appends the first `n` (at most 8) bytes of the little-endian `word`: one 8-byte store,
/// cut back.
#[inline]
fn put_word(buf: &mut Vec<u8>, word: u64, n: usize) {
    let len = buf.len();
    buf.extend_from_slice(&word.to_le_bytes());
    buf.truncate(len + n);
}

/// `0` for an absent field, its length + 1 otherwise.
fn opt_len(b: Option<&[u8]>) -> u64 {
    b.map_or(0, |b| b.len() as u64 + 1)
}

/// `0` for an absent field, its length + 1 otherwise.
fn put_opt_len(s: &mut Scratch, b: Option<&[u8]>) {
    s.varint(b.map_or(0, |b| b.len() as u64 + 1));
}

/// Varints assembled on the stack, with room before them for one more (the record length,
/// known last but written first).
struct Scratch {
    bytes: [u8; 64],
    start: usize,
    end: usize,
}

/// Room for the longest varint.
const PREFIX_ROOM: usize = 10;

impl Scratch {
    fn new() -> Self {
        Self {
            bytes: [0; 64],
            start: PREFIX_ROOM,
            end: PREFIX_ROOM,
        }
    }

    fn byte(&mut self, b: u8) {
        self.bytes[self.end] = b;
        self.end += 1;
    }

    fn varint(&mut self, v: u64) {
        varint_bytes(v, |b| self.byte(b));
    }

    /// Writes `v` as a varint just before the bytes already there (once).
    fn prefix_varint(&mut self, v: u64) {
        let n = varint_len(v);
        let at = self.start - n;
        let mut v = v;
        for b in &mut self.bytes[at..self.start] {
            *b = (v as u8) | 0x80;
            v >>= 7;
        }
        self.bytes[self.start - 1] &= 0x7f;
        self.start = at;
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn get_opt_slice<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    end: usize,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let n = get_varint(buf, pos, end)?;
    if n == 0 {
        return Ok(None);
    }
    let len = usize::try_from(n - 1).map_err(|_| DecodeError::Invalid("length overflow"))?;
    let stop = pos
        .checked_add(len)
        .filter(|&e| e <= end)
        .ok_or(DecodeError::Invalid("field overruns record"))?;
    let b = &buf[*pos..stop];
    *pos = stop;
    Ok(Some(b))
}

fn put_varint(buf: &mut Vec<u8>, v: u64) {
    varint_bytes(v, |b| buf.push(b));
}

/// Gives `v`'s varint bytes to `put`, first byte first: the one encoding loop of the writers.
#[inline]
fn varint_bytes(mut v: u64, mut put: impl FnMut(u8)) {
    while v >= 0x80 {
        put((v as u8) | 0x80);
        v >>= 7;
    }
    put(v as u8);
}

#[inline]
fn get_varint(buf: &[u8], pos: &mut usize, end: usize) -> Result<u64, DecodeError> {
    // Most varints of a record (attributes aside: deltas, lengths, counts) fit one byte.
    if *pos < end
        && let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u64::from(b));
    }
    get_long_varint(buf, pos, end)
}

fn get_long_varint(buf: &[u8], pos: &mut usize, end: usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if *pos >= end {
            return Err(DecodeError::Invalid("varint overruns record"));
        }
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError::Invalid("varint too long"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_record_path_writes_what_the_general_one_does() {
        // Around every boundary of the small path: one- and two-byte varints (127, 128), the
        // largest length and delta it takes (2^14 - 1) and a record just too long for it.
        let big = vec![7u8; 16_400];
        let fields = [
            None,
            Some(&big[..0]),
            Some(&big[..5]),
            Some(&big[..126]),
            Some(&big[..127]),
            Some(&big[..300]),
            Some(&big[..16_370]),
            Some(&big[..16_382]),
            Some(&big[..16_383]),
        ];
        let mut covered = 0;
        for ts_delta in [0, 1, 127, 128, 16_383, 16_384, 1 << 20, u64::MAX] {
            for offset_delta in [0, 5, 127, 128, 200, 16_383, 16_384, 70_000] {
                for key in fields {
                    for value in fields {
                        let f = RecordFields {
                            ts_delta,
                            offset_delta,
                            key,
                            value,
                            headers: &[],
                        };
                        let mut general = vec![1, 2, 3];
                        f.put_general(&mut general);
                        let mut small = vec![1, 2, 3];
                        if f.put_small(&mut small) {
                            covered += 1;
                            assert_eq!(
                                small, general,
                                "{ts_delta} {offset_delta} {key:?} {value:?}"
                            );
                        } else {
                            assert_eq!(small, [1, 2, 3], "nothing written when not covered");
                        }
                    }
                }
            }
        }
        assert!(
            covered > 100,
            "the small path covers common records: {covered}"
        );
    }

    #[test]
    fn whole_batches_len_stops_before_the_first_cut_batch() {
        let mut buf = Vec::new();
        let mut ends = vec![0];
        for (base, n) in [(0u64, 1usize), (1, 5), (6, 2)] {
            let msgs: Vec<Message> = (0..n).map(|i| Message::new(vec![b'v'; 10 + i])).collect();
            encode_batch(&mut buf, base, &msgs, 1_000, None);
            ends.push(buf.len());
        }
        for cut in 0..=buf.len() {
            let whole = ends
                .iter()
                .copied()
                .filter(|&e| e <= cut)
                .max()
                .unwrap_or(0);
            assert_eq!(whole_batches_len(&buf[..cut]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn crc32c_agrees_with_a_second_implementation() {
        // Every length up to a few SIMD blocks past 4 KiB, at every alignment in a word, and
        // the standard check value; both implementations, whichever this CPU picks.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b"123456789"),
            0xe306_9283
        );
        let data: Vec<u8> = (0..5_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in (0..4_400).step_by(7) {
                let bytes = &data[start..start + len];
                let fast = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes);
                assert_eq!(fast, u64::from(crc32c::crc32c(bytes)), "{start}+{len}");
                assert_eq!(crc32c(bytes), crc32c::crc32c(bytes), "{start}+{len}");
            }
        }
    }

    #[test]
    fn batch_round_trips() {
        let msgs = vec![
            Message::new("a")
                .with_key("k")
                .with_header("h", "v")
                .with_timestamp(100),
            Message::tombstone("k").with_timestamp(90),
            Message::new(Bytes::new()).with_timestamp(120),
        ];
        let mut buf = Vec::new();
        let h = encode_batch(
            &mut buf,
            7,
            &msgs,
            0,
            Some(ProducerStamp { id: 9, sequence: 3 }),
        );
        assert_eq!(h.len as usize, buf.len());
        let parsed = decode_header(&buf).expect("header");
        assert_eq!(parsed, h);
        verify(&buf, &parsed).expect("crc");
        let mut out = Vec::new();
        decode_records(&Bytes::from(buf), &parsed, &mut out).expect("records");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].offset, 7);
        assert_eq!(out[1].timestamp, 90);
        assert!(out[1].is_tombstone());
        assert_eq!(out[2].value.as_deref(), Some(&b""[..]));
        assert_eq!(out[0].headers, vec![("h".to_owned(), Bytes::from("v"))]);
        assert_eq!(parsed.max_timestamp, 120);
    }

    #[test]
    fn any_flipped_bit_fails_the_checks() {
        let mut buf = Vec::new();
        encode_batch(
            &mut buf,
            0,
            &[Message::new("hello world").with_key("k")],
            5,
            None,
        );
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let ok = decode_header(&b).and_then(|h| verify(&b, &h).map(|()| h));
                assert!(ok.is_err(), "byte {i} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos, b.len()), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
