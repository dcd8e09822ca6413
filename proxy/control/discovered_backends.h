#pragma once
// The config a snapshot is built from when pools discover backends in DNS: the file's config
// with each `discover` entry replaced by one backend per address it resolved to, named after
// the address. Pure: a function of the config and the sets, so a file reload, a change of a
// DNS answer and a test all build the same pools from the same inputs.

#include <map>
#include <string>

#include "conf/config.h"
#include "proxy/control/dns_answer.h"

namespace wsgate::proxy {

// What a discover entry's answer depends on: pool, name, port, family, resolvers. Entries
// with the same key across a reload keep their set (timings, weight and max_connections may
// change without a new resolution).
std::string discoverKey(const conf::PoolConfig& pool, const conf::DiscoverConfig& d);

// The last good set of each discover entry, by discoverKey.
using DiscoveredSets = std::map<std::string, Endpoints>;

// `source` with every pool's discovered backends appended after its written ones: entry by
// entry, in each set's order, named endpointName(), weight and max_connections from the
// entry (the SRV record's weight when the entry sets none), `discover` set to the entry's
// index. An address a pool already has from an earlier entry is not added twice. An entry
// without a set (never resolved) adds nothing.
conf::Config withDiscovered(const conf::Config& source, const DiscoveredSets& sets);

}  // namespace wsgate::proxy
