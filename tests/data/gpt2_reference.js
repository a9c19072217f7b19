// Writes the reference GPT-2 encodings of a set of texts as JSON:
//   node gpt2_reference.js PACKAGE_DIR OUT.json
// PACKAGE_DIR is the npm package gpt-3-encoder; OUT.json is
// [{"text": ..., "tokens": [...], "decoded": ...}, ...].
const fs = require('fs');
const { encode, decode } = require(process.argv[2]);

const texts = [
  'Hello world',
  "It's a test, isn't it? We'll see; they'd've said: \"yes\" (maybe).",
  'Numbers: 0 1 12 123 1234 3.14159 -42 1,000,000 2023-10-01 0xFF',
  'Punctuation!!! ... ??? --- *** ### @user #tag $100 50% a&b <html></html>',
  'Whitespace:  two   three    four\ttab\t\ttabs\nnewline\n\n\nthree newlines   \n  trailing   ',
  '   leading spaces and a final newline\n',
  'Accents: café naïve résumé Ångström Ελληνικά Русский язык façade',
  'CJK: 你好，世界。日本語のテキスト。한국어 텍스트',
  'Emoji: 😀 🎉👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷',
  'Mixed scripts: مرحبا بالعالم हिन्दी ไทย ½ ⅷ ²³ ٣٤٥',
  "Quotes and apostrophes: 'single' ‘curly’ “double” I'M YOU'RE don't",
  'Code: for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // comment',
  'Special <|endoftext|> token text stays text',
  '\u00a0non-breaking\u00a0space and ideographic\u3000space and zero\u200bwidth',
  '',
];

// Seeded random strings over code points of every class the pattern cares about.
let state = 12345;
const rand = (n) => { state = (state * 1103515245 + 12345) % 2147483648; return state % n; };
const pools = [
  'abcdefghijklmnopqrstuvwxyzABCXYZ', '0123456789', ' ', ' ', '  ', '\n', '\t', '\r\n', "'", "'s", "'ll", "'re",
  '.,;:!?-_()[]{}"/\\@#$%^&*+=<>|~`', 'éèêëàâäôöûüçñßøå', 'αβγδεζηθ', 'абвгдеж', '你好世界中文字', 'ひらがなカタカナ',
  '😀😂🎉👍🚀', '½¾²³ⅠⅡⅷ٣', '\u00a0\u2003\u3000\u2028', '\u0301\u0308',  // combining marks (Mn)
];
for (let i = 0; i < 200; ++i) {
  let s = '';
  const len = 1 + rand(40);
  for (let j = 0; j < len; ++j) {
    const pool = Array.from(pools[rand(pools.length)]);
    s += rand(4) === 0 ? pool.join('') : pool[rand(pool.length)];
  }
  texts.push(s);
}

const cases = texts.map((text) => {
  const tokens = encode(text);
  return { text, tokens, decoded: decode(tokens) };
});
fs.writeFileSync(process.argv[3], JSON.stringify(cases));
console.log(`wrote ${cases.length} reference encodings to ${process.argv[3]}`);
