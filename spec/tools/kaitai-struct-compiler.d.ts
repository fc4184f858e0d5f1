/**
 * Minimal typing of the npm package `kaitai-struct-compiler` (0.11), which ships without types.
 * Only the entry point used by spec/tools/kaitai.ts is declared.
 */
declare module 'kaitai-struct-compiler' {
  /** Something that can resolve `meta/imports` of a .ksy; this project passes `null`. */
  export interface KaitaiImporter {
    importYaml(name: string, mode: string): Promise<unknown>;
  }

  export interface KaitaiStructCompiler {
    /**
     * Compiles one .ksy specification (already parsed from YAML into plain objects).
     * Resolves to a map from generated file name (for `javascript`: `<ClassName>.js`) to source text.
     */
    compile(
      language: string,
      ksy: unknown,
      importer: KaitaiImporter | null,
      debug: boolean,
    ): Promise<Record<string, string>>;
  }

  const compiler: KaitaiStructCompiler;
  export default compiler;
}
