#include "text/json_schema.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/json_grammar.h"

namespace glimpse {

namespace jg = json_grammar;

namespace {

using ordered_json = nlohmann::ordered_json;

// Keywords with no effect on what is generated (annotations; additionalProperties because only
// the listed properties are ever written, except in an object without properties: a map).
const std::set<std::string> kIgnored = {"title",   "description", "$schema", "$id",    "$comment",
                                        "examples", "default",    "format",  "additionalProperties"};
const std::set<std::string> kSupported = {"type",    "properties", "required", "items", "minItems", "maxItems",
                                          "minLength", "maxLength", "enum",     "const", "anyOf",    "oneOf"};
constexpr const char* kSupportedList =
    "type, properties, required, items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, oneOf";

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
}

// "#/properties/colors/items": where in the schema a problem is.
std::string child_path(const std::string& path, const std::string& key) {
    std::string k;
    for (char ch : key) {
        if (ch == '~') k += "~0";
        else if (ch == '/') k += "~1";
        else k += ch;
    }
    return path + "/" + k;
}

std::string show_byte(int b) {
    if (b >= 0x20 && b < 0x7f) return std::string("'") + char(b) + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", b);
    return buf;
}

class Compiler {
public:
    explicit Compiler(std::string origin) { g_.origin = std::move(origin); }

    jg::Grammar run(const ordered_json& root) {
        add_builtins();
        // The top level: {} means any object (a document, not a bare scalar).
        const bool empty_object = root.is_object() && std::none_of(root.items().begin(), root.items().end(), [](auto&& kv) {
            return kSupported.count(kv.key()) != 0;
        });
        g_.root = empty_object ? any_object_ : compile(root, "#", 0);
        return std::move(g_);
    }

private:
    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        throw Error(ErrorKind::Usage, g_.origin + ": " + one_line(what) + " at " + path);
    }

    int add(jg::Node n) {
        if (g_.nodes.size() >= 0xFFFF) throw Error(ErrorKind::Usage, g_.origin + ": the schema is too large (over 65535 parts)");
        g_.nodes.push_back(std::move(n));
        return int(g_.nodes.size()) - 1;
    }

    static jg::Node literals(std::vector<std::string> lits) {
        jg::Node n;
        n.kind = jg::Kind::Literals;
        std::sort(lits.begin(), lits.end());
        lits.erase(std::unique(lits.begin(), lits.end()), lits.end());
        n.literals = std::move(lits);
        return n;
    }

    static jg::Node simple(jg::Kind k) {
        jg::Node n;
        n.kind = k;
        return n;
    }

    // "Any value" and its parts: used for {} inside a schema, arrays without items and the
    // values of objects without properties.
    void add_builtins() {
        const int any = add(simple(jg::Kind::AnyOf));
        jg::Node obj = simple(jg::Kind::Object);
        obj.free_keys = true;
        obj.items = any;
        obj.next_required = {0};
        jg::Node arr = simple(jg::Kind::Array);
        arr.items = any;
        const int key = add(simple(jg::Kind::String));
        obj.keys = key;
        any_object_ = add(obj);
        const std::vector<int> alts = {any_object_, add(arr), add(simple(jg::Kind::String)), add(simple(jg::Kind::Number)),
                                       add(literals({"true", "false", "null"}))};
        jg::Node& a = g_.nodes[size_t(any)];
        a.first.fill(-1);
        a.limit_depth = true;
        for (int alt : alts)
            for (int b = 0; b < 256; ++b)
                if (starts_with(alt, b)) a.first[size_t(b)] = int16_t(alt);
        any_ = any;
    }

    bool starts_with(int node, int b) const {
        const jg::Node& n = g_.nodes[size_t(node)];
        switch (n.kind) {
        case jg::Kind::Object: return b == '{';
        case jg::Kind::Array: return b == '[';
        case jg::Kind::String: return b == '"';
        case jg::Kind::Number:
        case jg::Kind::Integer: return b == '-' || (b >= '0' && b <= '9');
        case jg::Kind::Literals:
            return std::any_of(n.literals.begin(), n.literals.end(), [b](const std::string& l) { return uint8_t(l[0]) == b; });
        case jg::Kind::AnyOf: return n.first[size_t(b)] >= 0;
        }
        return false;
    }

    uint32_t count(const ordered_json& s, const char* key, const std::string& path) const {
        const auto& v = s[key];
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1'000'000'000)
            fail(child_path(path, key), std::string(key) + " must be a non-negative integer");
        return uint32_t(v.get<int64_t>());
    }

    int compile(const ordered_json& s, const std::string& path, int depth) {
        if (depth > jg::kMaxSchemaDepth) fail(path, "the schema nests deeper than " + std::to_string(jg::kMaxSchemaDepth) + " levels");
        if (s.is_boolean()) {
            if (!s.get<bool>()) fail(path, "the schema false allows nothing");
            return any_;
        }
        if (!s.is_object()) fail(path, "a schema must be a JSON object, not " + std::string(s.type_name()));
        bool any_keyword = false;
        for (const auto& kv : s.items()) {
            if (kIgnored.count(kv.key())) continue;
            if (!kSupported.count(kv.key()))
                fail(path, "unsupported keyword \"" + kv.key() + "\" (glimpse supports " + kSupportedList + ")");
            any_keyword = true;
        }
        if (!any_keyword) return any_;
        if (s.contains("anyOf") || s.contains("oneOf")) return compile_any_of(s, path, depth);
        if (s.contains("enum") || s.contains("const")) return compile_literals(s, path);

        std::vector<std::string> types;
        if (s.contains("type")) {
            const auto& t = s["type"];
            if (t.is_string()) types.push_back(t.get<std::string>());
            else if (t.is_array() && !t.empty() && std::all_of(t.begin(), t.end(), [](auto& x) { return x.is_string(); }))
                for (const auto& x : t) types.push_back(x.get<std::string>());
            else fail(child_path(path, "type"), "type must be a type name or a list of them");
        } else if (s.contains("properties") || s.contains("required")) {
            types = {"object"};
        } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
            types = {"array"};
        } else if (s.contains("minLength") || s.contains("maxLength")) {
            types = {"string"};
        }
        if (types.empty()) return any_;
        if (types.size() == 1) return compile_type(s, types[0], path, depth);
        std::vector<int> alts;
        for (const std::string& t : types) alts.push_back(compile_type(s, t, path, depth));
        return make_any_of(alts, path);
    }

    int compile_type(const ordered_json& s, const std::string& type, const std::string& path, int depth) {
        if (type == "object") return compile_object(s, path, depth);
        if (type == "array") return compile_array(s, path, depth);
        if (type == "string") {
            jg::Node n = simple(jg::Kind::String);
            if (s.contains("minLength")) n.min_length = count(s, "minLength", path);
            if (s.contains("maxLength")) n.max_length = count(s, "maxLength", path);
            if (n.min_length > n.max_length) fail(path, "minLength is larger than maxLength");
            return add(n);
        }
        if (type == "number") return add(simple(jg::Kind::Number));
        if (type == "integer") return add(simple(jg::Kind::Integer));
        if (type == "boolean") return add(literals({"true", "false"}));
        if (type == "null") return add(literals({"null"}));
        fail(child_path(path, "type"), "unknown type \"" + type + "\" (object, array, string, number, integer, boolean, null)");
    }

    int compile_object(const ordered_json& s, const std::string& path, int depth) {
        jg::Node n = simple(jg::Kind::Object);
        std::set<std::string> required;
        if (s.contains("required")) {
            const auto& r = s["required"];
            if (!r.is_array() || !std::all_of(r.begin(), r.end(), [](auto& x) { return x.is_string(); }))
                fail(child_path(path, "required"), "required must be a list of property names");
            for (const auto& x : r) required.insert(x.get<std::string>());
        }
        if (s.contains("properties")) {
            const auto& props = s["properties"];
            if (!props.is_object()) fail(child_path(path, "properties"), "properties must be an object");
            if (props.size() > size_t(jg::kMaxProperties))
                fail(child_path(path, "properties"), "more than " + std::to_string(jg::kMaxProperties) + " properties");
            for (const auto& kv : props.items()) {
                jg::Property p;
                p.name = kv.key();
                p.key = ordered_json(kv.key()).dump();
                p.required = required.count(kv.key()) != 0;
                p.node = compile(kv.value(), child_path(child_path(path, "properties"), kv.key()), depth + 1);
                n.props.push_back(std::move(p));
            }
        }
        for (const std::string& r : required)
            if (std::none_of(n.props.begin(), n.props.end(), [&](const jg::Property& p) { return p.name == r; }))
                fail(child_path(path, "required"), "required property \"" + r + "\" is not in properties");
        if (n.props.empty()) {
            // No properties: a map. additionalProperties false leaves only {}; a schema there
            // is what every value follows.
            if (!s.contains("additionalProperties") || s["additionalProperties"] == true) return any_object_;
            if (s["additionalProperties"] == false) return add(literals({"{}"}));
            jg::Node map = g_.nodes[size_t(any_object_)];
            map.items = compile(s["additionalProperties"], child_path(path, "additionalProperties"), depth + 1);
            return add(std::move(map));
        }
        n.next_required.assign(n.props.size() + 1, int(n.props.size()));
        for (int i = int(n.props.size()) - 1; i >= 0; --i)
            n.next_required[size_t(i)] = n.props[size_t(i)].required ? i : n.next_required[size_t(i) + 1];
        return add(std::move(n));
    }

    int compile_array(const ordered_json& s, const std::string& path, int depth) {
        jg::Node n = simple(jg::Kind::Array);
        n.items = any_;
        if (s.contains("items")) {
            if (s["items"].is_array()) fail(child_path(path, "items"), "items as a list (tuples) is not supported");
            n.items = compile(s["items"], child_path(path, "items"), depth + 1);
        }
        if (s.contains("minItems")) n.min_items = count(s, "minItems", path);
        if (s.contains("maxItems")) n.max_items = count(s, "maxItems", path);
        if (n.min_items > n.max_items) fail(path, "minItems is larger than maxItems");
        return add(std::move(n));
    }

    int compile_literals(const ordered_json& s, const std::string& path) {
        if (s.contains("enum") && s.contains("const")) fail(path, "enum and const together");
        const char* key = s.contains("enum") ? "enum" : "const";
        std::vector<ordered_json> values;
        if (s.contains("enum")) {
            if (!s["enum"].is_array() || s["enum"].empty()) fail(child_path(path, "enum"), "enum must be a non-empty list");
            for (const auto& v : s["enum"]) values.push_back(v);
        } else {
            values.push_back(s["const"]);
        }
        std::set<std::string> types;
        if (s.contains("type")) {
            const auto& t = s["type"];
            if (t.is_string()) types.insert(t.get<std::string>());
            else if (t.is_array())
                for (const auto& x : t)
                    if (x.is_string()) types.insert(x.get<std::string>());
        }
        std::vector<std::string> lits;
        for (const auto& v : values) {
            if (v.is_object() || v.is_array())
                fail(child_path(path, key), std::string(key) + " values must be scalars (strings, numbers, booleans, null)");
            if (!types.empty() && !fits_type(v, types))
                fail(child_path(path, key), "the value " + v.dump() + " does not have the schema's type");
            if (v.is_string()) {
                uint32_t chars = 0;
                for (unsigned char ch : v.get<std::string>()) chars += (ch & 0xC0) != 0x80;
                if (s.contains("maxLength") && chars > count(s, "maxLength", path))
                    fail(child_path(path, key), "the value " + v.dump() + " is longer than maxLength");
            }
            lits.push_back(v.dump(-1, ' ', false, ordered_json::error_handler_t::strict));
        }
        return add(literals(std::move(lits)));
    }

    static bool fits_type(const ordered_json& v, const std::set<std::string>& types) {
        if (v.is_string()) return types.count("string");
        if (v.is_boolean()) return types.count("boolean");
        if (v.is_null()) return types.count("null");
        if (v.is_number_integer() || v.is_number_unsigned()) return types.count("integer") || types.count("number");
        if (v.is_number_float()) return types.count("number") || (types.count("integer") && v.get<double>() == double(int64_t(v.get<double>())));
        return false;
    }

    int compile_any_of(const ordered_json& s, const std::string& path, int depth) {
        if (s.contains("anyOf") && s.contains("oneOf")) fail(path, "anyOf and oneOf together");
        const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
        for (const auto& kv : s.items())
            if (kv.key() != key && !kIgnored.count(kv.key()))
                fail(path, std::string(key) + " beside other keywords (\"" + kv.key() + "\"): put them inside each alternative");
        const auto& list = s[key];
        if (!list.is_array() || list.empty()) fail(child_path(path, key), std::string(key) + " must be a non-empty list");
        std::vector<int> alts;
        for (size_t i = 0; i < list.size(); ++i) alts.push_back(compile(list[i], child_path(child_path(path, key), std::to_string(i)), depth + 1));
        return make_any_of(alts, child_path(path, key));
    }

    // An anyOf node: the alternative is known from the first byte, so alternatives must start
    // differently (an object and a string: yes; two objects: no).
    int make_any_of(const std::vector<int>& alts, const std::string& path) {
        if (alts.size() == 1) return alts[0];
        jg::Node n = simple(jg::Kind::AnyOf);
        n.first.fill(-1);
        std::array<int, 256> owner;
        owner.fill(-1);
        for (size_t i = 0; i < alts.size(); ++i) {
            // "Any value" inside an anyOf leaves nothing for the others.
            const int alt = alts[i];
            for (int b = 0; b < 256; ++b) {
                if (!starts_with(alt, b)) continue;
                if (owner[size_t(b)] >= 0)
                    fail(path, "alternatives " + std::to_string(owner[size_t(b)]) + " and " + std::to_string(i) +
                                   " can both start with " + show_byte(b) +
                                   "; glimpse needs alternatives that start differently (e.g. an object or null, a "
                                   "string or a number)");
                owner[size_t(b)] = int(i);
                const jg::Node& an = g_.nodes[size_t(alt)];
                n.first[size_t(b)] = int16_t(an.kind == jg::Kind::AnyOf ? an.first[size_t(b)] : alt);
                if (an.kind == jg::Kind::AnyOf && an.limit_depth) n.limit_depth = true;
            }
        }
        return add(std::move(n));
    }

    jg::Grammar g_;
    int any_ = -1, any_object_ = -1;
};

}  // namespace

JsonSchema JsonSchema::parse(const std::string& schema_text, const std::string& origin) {
    ordered_json j;
    try {
        j = ordered_json::parse(schema_text);
    } catch (const nlohmann::json::exception& e) {
        std::string what = e.what();
        if (const size_t at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
        throw Error(ErrorKind::Usage, origin + ": not valid JSON: " + one_line(what));
    }
    return JsonSchema(std::make_shared<const jg::Grammar>(Compiler(origin).run(j)));
}

JsonSchema JsonSchema::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw input_error(path, "cannot open the JSON schema file");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw input_error(path, "cannot read the JSON schema file");
    return parse(text.str(), path);
}

JsonSchema JsonSchema::any_object() { return parse(R"({"type": "object"})", "response_format"); }

const std::string& JsonSchema::origin() const { return g_->origin; }

JsonMatcher::JsonMatcher(const JsonSchema& schema)
    : schema_(schema), state_(std::make_unique<jg::State>(jg::initial_state(schema.grammar()))) {}
JsonMatcher::~JsonMatcher() = default;
JsonMatcher::JsonMatcher(const JsonMatcher& o) : schema_(o.schema_), state_(std::make_unique<jg::State>(*o.state_)) {}

bool JsonMatcher::feed(uint8_t byte) {
    jg::State next;
    next.copy_from(*state_);
    if (!jg::advance(schema_.grammar(), next, byte)) return false;
    state_->copy_from(next);
    return true;
}

size_t JsonMatcher::feed(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i)
        if (!feed(uint8_t(text[i]))) return i;
    return text.size();
}

bool JsonMatcher::complete() const { return jg::is_complete(*state_); }
bool JsonMatcher::can_end() const { return jg::can_end(schema_.grammar(), *state_); }

}  // namespace glimpse
