import { ModelsDocument } from '../../client/generated/graphql.js';
import type { Command } from '../args.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../errors.js';
import { table, writeJson } from '../output.js';

/** sd15 models: the catalogue, checkpoints first (what --model and --embedding take). */
export async function listModels(ctx: CommandContext, command: Extract<Command, { name: 'models' }>): Promise<number> {
  const { models } = await ctx.client.request(ModelsDocument, {});
  if (command.json) {
    writeJson(ctx.stdout, models);
    return ExitCode.OK;
  }
  const sorted = [...models].sort((a, b) => a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
  const rows = sorted.map((model) => [
    model.id,
    model.kind.toLowerCase() + (model.inpainting ? ' (inpainting)' : ''),
    model.name,
    model.triggerWords.join(', ') || '-',
    model.aliases.join(', ') || '-',
  ]);
  ctx.stdout.write(table(['ID', 'KIND', 'NAME', 'TRIGGER WORDS', 'ALIASES'], rows));
  return ExitCode.OK;
}
