#pragma once
// Reference parsers for the list-valued fields of the WebSocket handshake, for the fuzz
// oracle of proxy/ws/handshake and http::hasToken. Written from the grammars, as a
// recursive descent that either returns every element or says the value is malformed:
//
//   #element            = [ element ] *( OWS "," OWS [ element ] )      RFC 9110 5.6.1
//   Connection          = #connection-option ; connection-option = token  RFC 9110 7.6.1
//   Upgrade             = #protocol ; protocol = protocol-name ["/" protocol-version]  7.8
//   Sec-WebSocket-Protocol   = 1#token                                    RFC 6455 11.3.4
//   Sec-WebSocket-Extensions = 1#extension                                RFC 6455 9.1
//   extension           = extension-token *( OWS ";" OWS extension-param )
//   extension-param     = token [ BWS "=" BWS ( token / quoted-string ) ]
//   quoted-string       = DQUOTE *( qdtext / quoted-pair ) DQUOTE        RFC 9110 5.6.4

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::fuzz::model {

inline bool isTchar(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

inline char lowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

inline bool sameToken(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) return false;
  }
  return true;
}

struct Extension {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;  // quoted values unescaped
};

class ListParser {
public:
  explicit ListParser(std::string_view s) : s_(s) {}

  // #token (Connection, Sec-WebSocket-Protocol): the tokens, or nullopt when malformed.
  static std::optional<std::vector<std::string>> tokens(std::string_view value) {
    ListParser p(value);
    return p.list<std::string>([&p](std::string& out) { return p.token(out); });
  }
  // #protocol (Upgrade): each "name" or "name/version", as written.
  static std::optional<std::vector<std::string>> protocols(std::string_view value) {
    ListParser p(value);
    return p.list<std::string>([&p](std::string& out) {
      if (!p.token(out)) return false;
      if (p.peek('/')) {
        ++p.i_;
        std::string version;
        if (!p.token(version)) return false;
        out += "/" + version;
      }
      return true;
    });
  }
  static std::optional<std::vector<Extension>> extensions(std::string_view value) {
    ListParser p(value);
    return p.list<Extension>([&p](Extension& out) { return p.extension(out); });
  }

  // The names an extension list announces whatever else is wrong with it: the token at
  // the start of the value and after every comma outside a quoted-string. A recipient
  // that accepts the list must have accepted these names.
  static std::vector<std::string> leadingNames(std::string_view value) {
    std::vector<std::string> names;
    std::size_t i = 0;
    bool atElementStart = true, quoted = false;
    while (i <= value.size()) {
      if (atElementStart) {
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        std::size_t j = i;
        while (j < value.size() && isTchar(value[j])) ++j;
        if (j > i) names.emplace_back(value.substr(i, j - i));
        atElementStart = false;
        i = j;
        continue;
      }
      if (i == value.size()) break;
      const char c = value[i];
      if (quoted && c == '\\') {
        i += 2;
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (c == ',' && !quoted) atElementStart = true;
      ++i;
    }
    return names;
  }

private:
  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void ows() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool token(std::string& out) {
    const std::size_t start = i_;
    while (i_ < s_.size() && isTchar(s_[i_])) ++i_;
    out.assign(s_.substr(start, i_ - start));
    return i_ > start;
  }
  static bool isQdtext(unsigned char c) {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) ||
           (c >= 0x5D && c <= 0x7E) || c >= 0x80;
  }
  bool quotedString(std::string& out) {
    if (!peek('"')) return false;
    ++i_;
    out.clear();
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) return false;
        const auto next = static_cast<unsigned char>(s_[i_ + 1]);
        if (!(next == '\t' || next == ' ' || (next >= 0x21 && next != 0x7F))) return false;
        out.push_back(static_cast<char>(next));
        i_ += 2;
        continue;
      }
      if (!isQdtext(c)) return false;
      out.push_back(static_cast<char>(c));
      ++i_;
    }
    return false;  // no closing quote
  }
  bool extension(Extension& out) {
    if (!token(out.name)) return false;
    for (;;) {
      const std::size_t save = i_;
      ows();
      if (!peek(';')) {
        i_ = save;
        return true;
      }
      ++i_;
      ows();
      std::string name, value;
      if (!token(name)) return false;
      const std::size_t beforeEq = i_;
      ows();
      if (peek('=')) {
        ++i_;
        ows();
        if (peek('"')) {
          if (!quotedString(value)) return false;
        } else if (!token(value)) {
          return false;
        }
      } else {
        i_ = beforeEq;
      }
      out.params.emplace_back(std::move(name), std::move(value));
    }
  }
  // [ element ] *( OWS "," OWS [ element ] ), the whole value.
  template <class T, class Element>
  std::optional<std::vector<T>> list(Element&& element) {
    std::vector<T> out;
    ows();
    for (;;) {
      if (i_ < s_.size() && s_[i_] != ',') {
        T e{};
        if (!element(e)) return std::nullopt;
        out.push_back(std::move(e));
        ows();
      }
      if (i_ == s_.size()) return out;
      if (s_[i_] != ',') return std::nullopt;
      ++i_;
      ows();
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace wsgate::fuzz::model
