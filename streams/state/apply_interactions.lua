-- Applies a batch of purchase/review events to per-user sequences, atomically and
-- idempotently, and maintains item popularity and bounded item-item co-occurrence.
--
-- KEYS: 1 items:idx  2 items:id  3 items:next  4 pop  5 applied  6 stats  7 users (HLL)
--       8 trending (zset)  9 trending epoch (unix seconds)
-- ARGV: 1 max history length  2 co-occurrence window  3 co-occurrence cap per item
--       4 number of events  5 trending time constant (seconds), then 6 values per event:
--       pseudonym, 6-byte event hash, item id, ts (unix seconds), "topic:partition", offset
--
-- A sequence is one string of 14-byte entries sorted by time:
--   ts (uint32 BE seconds) | item index (uint32 BE) | event hash (6 bytes)
-- which keeps a 50-event history under 1 KB of Redis.
--
-- Once a history is full, an event older than its oldest entry is outside the window
-- and changes nothing. An event in the same second as the oldest entry may be new (a
-- large invoice stamped with one second) or one this history evicted; the hashes of
-- evicted events of that second are kept in 'u:{uid}:edge' (4-byte second, then
-- 6-byte hashes) to tell the two apart.
--
-- Returns {statuses, item indexes, pseudonyms touched, their sequences before the batch,
-- item indexes first seen in this batch};
-- status 1 applied, 2 duplicate redelivered at an offset already applied (its
-- recommendation may not have been delivered), 0 duplicate of an applied event seen
-- at a new offset, 3 older than the whole (full) retained history: no change.

local ENTRY = 14
local EDGE_CAP = 4096
local maxlen = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tau = tonumber(ARGV[5])

local blobs, before, order, dirty = {}, {}, {}, {}
local edges, edge_dirty = {}, {}
local highs, highs_dirty = {}, {}
local statuses, idxs = {}, {}
local applied, dups, stale = 0, 0, 0

local known = {}
local created = {}

local function item_index(item)
  local idx = known[item]
  if idx then return idx end
  idx = redis.call('HGET', KEYS[1], item)
  if idx then
    idx = tonumber(idx)
  else
    idx = redis.call('INCR', KEYS[3])
    created[#created + 1] = idx
    redis.call('HSET', KEYS[1], item, idx)
    redis.call('HSET', KEYS[2], idx, item)
  end
  known[item] = idx
  return idx
end

-- Counter updates are summed over the batch and written once per key and member:
-- the same pairs and items recur within a batch, and each redis.call costs.
local pair_counts, pop_counts = {}, {}
-- Trending is popularity decayed by event time: an event at ts adds exp((ts - t0) / tau)
-- to its item, so reading the set ranks by sum of exp(-(now - ts) / tau) for any now.
-- t0 moves forward (and the set is rescaled) before the weights could overflow.
local trend_events = {}

local function bump_pair(a, b)
  local row = pair_counts[a]
  if row == nil then
    row = {}
    pair_counts[a] = row
  end
  row[b] = (row[b] or 0) + 1
end

local function write_counts()
  for a, row in pairs(pair_counts) do
    local key = 'co:' .. a
    local grew = false
    for b, c in pairs(row) do
      -- A member whose count is now exactly what was added is new: the set grew.
      if tonumber(redis.call('ZINCRBY', key, c, b)) == c then grew = true end
    end
    -- Trim only when far over the cap so that new pairs get a chance to grow.
    if grew then
      local card = redis.call('ZCARD', key)
      if card > 2 * cap then
        redis.call('ZREMRANGEBYRANK', key, 0, card - cap - 1)
      end
    end
  end
  for idx, c in pairs(pop_counts) do
    redis.call('ZINCRBY', KEYS[4], c, idx)
  end
  if #trend_events == 0 then return end
  local newest = trend_events[1][2]
  for _, ev in ipairs(trend_events) do
    if ev[2] > newest then newest = ev[2] end
  end
  local t0 = tonumber(redis.call('GET', KEYS[9]) or newest)
  if newest - t0 > 30 * tau then
    redis.call('ZUNIONSTORE', KEYS[8], 1, KEYS[8], 'WEIGHTS', math.exp((t0 - newest) / tau))
    t0 = newest
  end
  redis.call('SET', KEYS[9], t0)
  local trend = {}
  for _, ev in ipairs(trend_events) do
    trend[ev[1]] = (trend[ev[1]] or 0) + math.exp((ev[2] - t0) / tau)
  end
  for idx, w in pairs(trend) do
    redis.call('ZINCRBY', KEYS[8], w, idx)
  end
end

local function find_hash(blob, h)
  local pos = 1
  while true do
    local p = string.find(blob, h, pos, true)
    if not p then return false end
    if (p - 9) % ENTRY == 0 then return true end
    pos = p + 1
  end
end

local function load_edge(uid)
  local edge = edges[uid]
  if edge == nil then
    edge = redis.call('GET', 'u:{' .. uid .. '}:edge') or ''
    edges[uid] = edge
  end
  return edge
end

local function edge_has(edge, ts, h)
  if #edge < 4 or struct.unpack('>I4', edge, 1) ~= ts then return false end
  local pos = 5
  while true do
    local p = string.find(edge, h, pos, true)
    if not p then return false end
    if (p - 5) % 6 == 0 then return true end
    pos = p + 1
  end
end

-- Drops the oldest entries past maxlen, remembering those of the new oldest second.
local function trim(uid, blob)
  local cut = #blob - maxlen * ENTRY
  if cut <= 0 then return blob end
  local evicted = string.sub(blob, 1, cut)
  blob = string.sub(blob, cut + 1)
  local oldest = struct.unpack('>I4', blob, 1)
  local edge, kept = load_edge(uid), {}
  if #edge >= 4 and struct.unpack('>I4', edge, 1) == oldest then kept[1] = string.sub(edge, 5) end
  for j = 0, cut / ENTRY - 1 do
    if struct.unpack('>I4', evicted, j * ENTRY + 1) == oldest then
      kept[#kept + 1] = string.sub(evicted, j * ENTRY + 9, j * ENTRY + 14)
    end
  end
  local body = table.concat(kept)
  if #body > EDGE_CAP * 6 then body = string.sub(body, -EDGE_CAP * 6) end
  if #body > 0 then edges[uid] = struct.pack('>I4', oldest) .. body else edges[uid] = '' end
  edge_dirty[uid] = true
  return blob
end

for e = 0, n - 1 do
  local base = 6 + e * 6
  local uid, h, item = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local ts, tp, off = tonumber(ARGV[base + 3]), ARGV[base + 4], tonumber(ARGV[base + 5])

  local blob = blobs[uid]
  if blob == nil then
    blob = redis.call('GET', 'u:{' .. uid .. '}:seq') or ''
    blobs[uid] = blob
    before[#before + 1] = blob
    order[#order + 1] = uid
  end
  local high = highs[tp]
  if high == nil then
    high = tonumber(redis.call('HGET', KEYS[5], tp) or '-1')
    highs[tp] = high
  end

  local status, idx = 1, 0
  local count = #blob / ENTRY
  local oldest = -1
  if count >= maxlen then oldest = struct.unpack('>I4', blob, 1) end
  if find_hash(blob, h) or (ts == oldest and edge_has(load_edge(uid), ts, h)) then
    if off <= high then status = 2 else status = 0 end
    dups = dups + 1
  else
    if ts < oldest then
      status = 3
      stale = stale + 1
    else
      idx = item_index(item)
      -- Insert after the last entry not newer than this one: arrival order breaks ties.
      local ins = count
      while ins > 0 and struct.unpack('>I4', blob, (ins - 1) * ENTRY + 1) > ts do
        ins = ins - 1
      end
      local seen, paired, k = {}, 0, ins
      while k > 0 and paired < window do
        local _, other = struct.unpack('>I4I4', blob, (k - 1) * ENTRY + 1)
        if other ~= idx and not seen[other] then
          seen[other] = true
          paired = paired + 1
          bump_pair(idx, other)
          bump_pair(other, idx)
        end
        k = k - 1
      end
      pop_counts[idx] = (pop_counts[idx] or 0) + 1
      trend_events[#trend_events + 1] = {idx, ts}
      blob = string.sub(blob, 1, ins * ENTRY) .. struct.pack('>I4I4c6', ts, idx, h)
        .. string.sub(blob, ins * ENTRY + 1)
      blob = trim(uid, blob)
      blobs[uid] = blob
      dirty[uid] = true
      applied = applied + 1
    end
  end
  if idx == 0 and status ~= 3 then idx = known[item] or tonumber(redis.call('HGET', KEYS[1], item) or '0') end
  if off > high then
    highs[tp] = off
    highs_dirty[tp] = true
  end
  statuses[e + 1] = status
  idxs[e + 1] = idx
end

write_counts()
for _, uid in ipairs(order) do
  if dirty[uid] then
    redis.call('SET', 'u:{' .. uid .. '}:seq', blobs[uid])
    redis.call('PFADD', KEYS[7], uid)
  end
end
for uid, _ in pairs(edge_dirty) do
  if edges[uid] == '' then
    redis.call('DEL', 'u:{' .. uid .. '}:edge')
  else
    redis.call('SET', 'u:{' .. uid .. '}:edge', edges[uid])
  end
end
for tp, _ in pairs(highs_dirty) do
  redis.call('HSET', KEYS[5], tp, highs[tp])
end
if applied > 0 then redis.call('HINCRBY', KEYS[6], 'applied', applied) end
if dups > 0 then redis.call('HINCRBY', KEYS[6], 'duplicates', dups) end
if stale > 0 then redis.call('HINCRBY', KEYS[6], 'stale', stale) end
return {statuses, idxs, order, before, created}
