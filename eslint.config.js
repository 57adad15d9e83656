import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', NodeJS: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The web console: browser ES modules, no build step (see web/index.html).
    files: ['web/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: {
        window: 'readonly', document: 'readonly', location: 'readonly', sessionStorage: 'readonly', fetch: 'readonly', Node: 'readonly',
        AbortController: 'readonly', TextDecoderStream: 'readonly', ResizeObserver: 'readonly', console: 'readonly',
        setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
        process: 'off', Buffer: 'off', NodeJS: 'off',
      },
    },
  },
  {
    files: ['src/engine/**', 'src/meta/**', 'src/chunks/**', 'src/common/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/nbd/**', '**/api/**', '**/vm/**', '**/cli/**', '**/daemon/**', '**/replication/**'], message: 'lower layers must not import upper ones (see docs/design.md)' }] },
      ],
    },
  },
  {
    files: ['src/protocol/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/engine/**', '**/meta/**', '**/chunks/**', '**/api/**', '**/vm/**', '**/cli/**', '**/daemon/**', '**/replication/**'], message: 'protocol codecs import only src/common (see docs/design.md)' }] },
      ],
    },
  },
  {
    files: ['src/nbd/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/api/**', '**/vm/**', '**/cli/**', '**/daemon/**'], message: 'the NBD server must not import the layers above it (see docs/design.md)' }] },
      ],
    },
  },
);
